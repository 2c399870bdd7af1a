"""Durable task progress: a task interrupted by SIGKILL resumes at its last completed graph step, and a
task that keeps taking the process down is failed, not re-run forever."""

from __future__ import annotations

import time

from a4ps.backend.tasks import FAILED, QUEUED, TaskQueue
from tests.support.backend import BackendProcess, wait_for_task
from tests.support.config import write_config


def wait_for_utterance(events, task_id: str, node: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == "utterance" and item[1].get("task_id") == task_id and item[1]["node"] == node:
            return item[1]
    raise TimeoutError(f"no {node} utterance of {task_id} in {timeout_s} s")


def test_sigkill_after_the_plan_resumes_at_brick(tmp_path):
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 1})
    data = tmp_path / "data"
    first = BackendProcess(data, config).start()
    events = first.subscribe()
    task_id = first.request("submit_task", text="Name one colour of the sea.")["task_id"]
    plan = wait_for_utterance(events, task_id, "alfred_plan", 120)
    wait_for_utterance(events, task_id, "brick", 120)  # the plan step is saved before BRICK runs
    first.kill()
    events.close()

    second = BackendProcess(data, config).start()
    try:
        events = second.subscribe()
        seen, final = [], None
        deadline = time.monotonic() + 300
        while final is None and (left := deadline - time.monotonic()) > 0:
            item = events.poll_event(left)
            if not item or item[1].get("task_id") != task_id:
                continue
            topic, payload = item
            seen.append((topic, payload.get("node")))
            if topic == "task" and payload["status"] in ("done", "failed"):
                final = payload
        events.close()
        assert final is not None and final["status"] == "done", final
        assert ("task_resumed", None) in seen
        assert ("utterance", "alfred_plan") not in seen, "the plan was made again"
        assert ("utterance", "alfred_synthesize") in seen
        assert "resumes at" in second.output()
        assert plan["text"]
    finally:
        assert second.stop() == 0


def test_a_task_that_crashed_the_backend_too_often_is_failed_with_the_reason():
    queue = TaskQueue(max_attempts=2)
    task, _ = queue.submit("crashes the model")
    other, _ = queue.submit("fine")
    assert queue.take(0.1) is task and task.attempts == 1
    image = queue.export()  # what the image holds when the process dies now
    restored = TaskQueue(max_attempts=2)
    restored.restore(image)
    again = restored.take(0.1)
    assert again.task_id == task.task_id and again.attempts == 2
    crashed_twice = TaskQueue(max_attempts=2)
    crashed_twice.restore(restored.export())
    statuses = {t["task_id"]: t for t in crashed_twice.snapshot()}
    assert statuses[task.task_id]["status"] == FAILED
    assert "2 times" in statuses[task.task_id]["error"]
    assert statuses[other.task_id]["status"] == QUEUED
    assert crashed_twice.take(0.1).task_id == other.task_id


def test_an_orderly_requeue_is_not_counted_as_a_crash():
    queue = TaskQueue(max_attempts=1)
    task, _ = queue.submit("interrupted by a shutdown")
    queue.take(0.1)
    queue.requeue(task)
    restored = TaskQueue(max_attempts=1)
    restored.restore(queue.export())
    assert restored.take(0.1).task_id == task.task_id


def test_a_finished_task_leaves_no_saved_progress(tmp_path):
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 1})
    with BackendProcess(tmp_path / "data", config) as backend:
        events = backend.subscribe()
        task_id = backend.request("submit_task", text="Say hello.")["task_id"]
        assert wait_for_task(events, task_id, {"done", "failed"}, 300)["status"] == "done"
        events.close()
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "graph_checkpoints.sqlite") as db:
        rows = db.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (task_id,)).fetchone()[0]
    assert rows == 0
