"""Supervised loops: a failing step is logged, counted and retried; a task fails, never the worker."""

from __future__ import annotations

import threading
import time

from a4ps.backend.supervisor import Supervisor
from tests.support.backend import BackendProcess, wait_for_task
from tests.support.config import write_config


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def loop_health(supervisor: Supervisor, name: str) -> dict:
    return next(h for h in supervisor.health() if h["name"] == name)


def test_a_failing_step_is_restarted_with_its_error_reported():
    stop, calls = threading.Event(), []

    def step():
        calls.append(threading.current_thread().name)
        if len(calls) <= 2:
            raise RuntimeError(f"boom {len(calls)}")
        time.sleep(0.01)

    supervisor = Supervisor(stop, backoff_s=0.01, max_backoff_s=0.05)
    supervisor.run("flaky", step)
    wait_for(lambda: len(calls) >= 5, 10, "the loop to keep going after two failures")
    health = loop_health(supervisor, "flaky")
    assert health["restarts"] == 2 and health["last_error"] == "RuntimeError: boom 2"
    assert health["state"] == "running" and health["last_beat"] > time.time() - 5
    assert set(calls) == {"flaky"}, "the loop runs on a thread named after it"
    stop.set()
    assert supervisor.join(timeout_s=5) == []
    assert loop_health(supervisor, "flaky")["state"] == "stopped"


def test_a_job_retries_until_it_succeeds_once_and_joins_in_order():
    stop, attempts = threading.Event(), []

    def job():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("sandbox not ready")

    supervisor = Supervisor(stop, backoff_s=0.01)
    supervisor.run("job", job, once=True)
    supervisor.run("ticker", lambda: stop.wait(0.01))
    wait_for(lambda: loop_health(supervisor, "job")["state"] == "done", 10, "the job to finish")
    assert len(attempts) == 2 and loop_health(supervisor, "job")["restarts"] == 1
    stop.set()
    assert supervisor.join(first=("ticker", "job"), timeout_s=5) == []
    assert {h["state"] for h in supervisor.health()} == {"done", "stopped"}


def test_an_unwritable_image_fails_the_task_and_the_next_task_runs(tmp_path):
    """The image folder replaced by a file mid-run (chmod does not stop root): the task fails with
    a clear error, the worker survives and reports it, and once the folder is back a task runs."""
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 1})
    data = tmp_path / "data"
    with BackendProcess(data, config) as backend:
        loops = {h["name"]: h for h in backend.request("ping")["loops"]}
        assert {"task-worker", "autosave", "tool-revalidation"} <= set(loops)
        assert loops["task-worker"]["state"] == "running" and loops["task-worker"]["restarts"] == 0
        events = backend.subscribe()

        (data / "image").rename(data / "image.moved")
        (data / "image").write_text("not a folder")
        reply = backend.request("submit_task", text="Name one planet.")
        assert reply["ok"] and "living image cannot be saved" in reply["warning"]
        failed = wait_for_task(events, reply["task_id"], {"failed", "done"}, 60)
        assert failed["status"] == "failed"
        assert failed["error"].startswith("task not run: the living image cannot be saved")
        assert "Not a directory" in failed["error"]

        def worker_back():
            worker = next(h for h in backend.request("ping")["loops"] if h["name"] == "task-worker")
            return worker if worker["restarts"] == 1 and worker["state"] == "running" else None

        worker = wait_for(worker_back, 30, "the worker to run again")
        assert "living image cannot be saved" in worker["last_error"]
        state = backend.request("get_state")["state"]
        assert next(h for h in state["loops"] if h["name"] == "task-worker")["restarts"] == 1

        (data / "image").unlink()
        (data / "image.moved").rename(data / "image")
        second = backend.request("submit_task", text="Name one colour.")
        assert second["ok"] and "warning" not in second
        wait_for_task(events, second["task_id"], {"running"}, 60)
        token = events.wait_for("token", 300)  # it runs: a persona is speaking on it
        assert token is not None and token["task_id"] == second["task_id"]
        assert backend.request("cancel_task", task_id=second["task_id"])["ok"]  # no need to hear it all
        assert wait_for_task(events, second["task_id"], {"cancelled", "done", "failed"}, 120)["status"] != "failed"
        events.close()
    assert "loop task-worker failed; restarting" in backend.output()
