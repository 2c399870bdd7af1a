"""The backend as a process: crash safety (SIGKILL mid-task), graceful stop, end-to-end `a4ps ask`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from a4ps.config.loader import project_root
from a4ps.protos import LivingImage
from tests.support.backend import BackendProcess, wait_for_task
from tests.support.config import write_config


def image_of(data_dir):
    return LivingImage(data_dir / "image", data_dir / "image.key", 5)


def test_sigkill_mid_task_then_restart_keeps_the_queue(tmp_path):
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 1})
    data = tmp_path / "data"
    first = BackendProcess(data, config).start()
    events = first.subscribe()
    running_id = first.request("submit_task", text="Describe the sea in one sentence.")["task_id"]
    queued_id = first.request("submit_task", text="Describe the sky in one sentence.")["task_id"]
    wait_for_task(events, running_id, {"running"}, 30)
    first.kill()  # no handler runs: whatever survives was already on disk
    events.close()

    state, path = image_of(data).load_latest()
    assert path is not None, "the image must be valid after SIGKILL"
    pending = [t["task_id"] for t in state["tasks"] if t["status"] == "queued"]
    assert pending == [running_id, queued_id]

    second = BackendProcess(data, config).start()
    try:
        assert "refused living image" not in second.output()
        snapshot = second.request("get_state")["state"]
        ids = {t["task_id"]: t["status"] for t in snapshot["tasks"]}
        assert ids[running_id] in ("queued", "running", "done") and ids[queued_id] in ("queued", "running", "done")
        events = second.subscribe()
        for task_id in (running_id, queued_id):
            final = wait_for_task(events, task_id, {"done", "failed"}, 300, second)
            assert final["status"] == "done", final
        events.close()
    finally:
        assert second.stop() == 0


def test_sigterm_during_a_task_requeues_it_and_exits_0(tmp_path):
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 3, "backend.shutdown_grace_s": 0.0})
    data = tmp_path / "data"
    backend = BackendProcess(data, config).start()
    events = backend.subscribe()
    backend.request("update_proto", name="BRICK", changes={"temperature": 0.11})
    task_id = backend.request("submit_task", text="Write a long essay about rivers.")["task_id"]
    wait_for_task(events, task_id, {"running"}, 30)
    events.close()
    assert backend.stop(signal.SIGTERM) == 0
    assert "living image saved; backend stopped" in backend.output()
    state, _ = image_of(data).load_latest()
    assert [t["task_id"] for t in state["tasks"] if t["status"] == "queued"] == [task_id]
    assert state["protos"]["overrides"]["BRICK"]["temperature"]["value"] == 0.11  # live edits persist


def wait_for_token(events, task_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == "token" and item[1].get("task_id") == task_id:
            return item[1]
    raise TimeoutError(f"no token of {task_id} in {timeout_s} s")


def test_cancel_while_the_embedded_model_writes_stops_the_task(tmp_path):
    """Stop at the task's first streamed token: no task can end `done` from there (the rest of the
    plan, BRICK, ROBIN and the synthesis are still to be written), so it must end `cancelled`."""
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 3})
    with BackendProcess(tmp_path / "data", config) as backend:
        events = backend.subscribe()
        task_id = backend.request("submit_task", text="Explain gravity.")["task_id"]
        wait_for_token(events, task_id, 120)
        stopped = time.monotonic()
        assert backend.request("cancel_task", task_id=task_id)["status"] == "cancelling"
        final = wait_for_task(events, task_id, {"cancelled", "done", "failed"}, 30)
        ended = time.monotonic() - stopped
        events.close()
    assert final["status"] == "cancelled", final
    assert ended < 3.0, ended  # 1 s to stop the model, the rest is the event's way back


def test_cancel_while_ollama_has_not_answered_stops_the_task_and_closes_the_request(tmp_path):
    """Deterministic Stop: the Ollama stand-in holds the task's first token for 60 s, so the task can
    only end by the cancel, and the provider must close its HTTP request rather than wait it out."""
    import json

    from tests.support.ollama_standin import OllamaStandIn

    def responder(model, messages, fmt):
        if fmt is not None:
            return json.dumps({"form": "prose", "items": 0, "list_marker": "1."} if "form" in fmt["properties"]
                              else {"verdict": "aligned"})
        return "An answer."

    config = write_config(tmp_path / "config", settings={"graph.max_turns": 1})
    with OllamaStandIn(models=["llama3.2:3b", "phi3:mini", "gemma2:2b"], responder=responder) as server:
        backend = BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host})
        with backend:
            assert backend.request("ping")["provider"] == "ollama"
            deadline = time.monotonic() + 60  # the warm-up call (before the first task) answers at once
            while "model ready" not in backend.output() and "warm-up failed" not in backend.output():
                assert time.monotonic() < deadline, backend.output()
                time.sleep(0.05)
            server.first_token_delay_s = 60
            chats_before = len(server.chats_started)
            events = backend.subscribe()
            task_id = backend.request("submit_task", text="What should I wear in the rain?")["task_id"]
            wait_for_task(events, task_id, {"running"}, 30)
            deadline = time.monotonic() + 30
            while len(server.chats_started) == chats_before:  # the task's first model request arrived
                assert time.monotonic() < deadline, "the task never asked the model"
                time.sleep(0.01)
            time.sleep(0.5)  # the stand-in is now holding back the first token
            stopped = time.monotonic()
            assert backend.request("cancel_task", task_id=task_id)["status"] == "cancelling"
            final = wait_for_task(events, task_id, {"cancelled", "done", "failed"}, 30)
            ended = time.monotonic() - stopped
            events.close()
            assert final["status"] == "cancelled", final
            assert ended < 2.0, ended
            assert server.disconnects and server.disconnects[0] - stopped < 1.0  # the stream was closed


def test_ask_end_to_end_on_the_embedded_model(tmp_path):
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 2})
    with BackendProcess(tmp_path / "data", config) as backend:
        result = subprocess.run([sys.executable, "-m", "a4ps", "ask", "What is a good name for a goldfish?"],
                                cwd=project_root(), env=backend.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[ALFRED · alfred_plan · turn 0]" in out and "[BRICK · brick · turn 1]" in out
    assert "[ROBIN · robin · turn 1]" in out and "(dissonance " in out
    synthesis = out.split("=== Synthesis (ALFRED,")[1].split("\n", 1)[1].strip()
    assert synthesis
    # the finished task is in long-term memory: ALFRED's synthesis as the summary, the dialogue as chunks
    from a4ps.config import load_settings
    from a4ps.memory import open_memory

    memory = open_memory(tmp_path / "data", load_settings().memory)
    episodes = memory.recent_episodes(5)
    assert len(episodes) == 1 and episodes[0].task_text == "What is a good name for a goldfish?"
    assert episodes[0].summary.strip() == synthesis
    assert {c.persona for c in episodes[0].chunks} >= {"ALFRED", "BRICK", "ROBIN"}
    assert memory.recall("goldfish name", k=3)[0].task_text == "What is a good name for a goldfish?"


def test_ask_without_backend_is_a_clear_error(tmp_path):
    env = {**os.environ, "A4PS_REP_ADDR": "tcp://127.0.0.1:1", "A4PS_PUB_ADDR": "tcp://127.0.0.1:2"}
    result = subprocess.run([sys.executable, "-m", "a4ps", "ask", "hi", "--connect-timeout", "1"],
                            cwd=project_root(), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "no backend answers" in result.stderr and "Traceback" not in result.stderr


def test_backend_on_ollama_stand_in_keeps_one_model_resident(tmp_path):
    """auto picks Ollama when it answers with every persona model; a task runs through it."""
    import json
    import threading

    from tests.support.ollama_standin import OllamaStandIn

    residency, lock = [], threading.Lock()

    def responder(model, messages, fmt):
        with lock:
            residency.append(list(server.resident()))
        if fmt is not None:  # the constrained follow-ups: the answer's form, ROBIN's verdict
            props = fmt["properties"]
            if "form" in props:
                return json.dumps({"form": "prose", "items": 0, "list_marker": "1."})
            return json.dumps({"verdict": "aligned"})
        instruction = messages[-1]["content"]
        if instruction.startswith("ALFRED's part: write the final"):
            return "Take a raincoat."
        return {"The person's task": "1. Listen. 2. Answer.", "BRICK's part": "Rain needs a coat.",
                "ROBIN's part": "Stay dry and warm."}[next(k for k in ("The person's task", "BRICK's part",
                                                                     "ROBIN's part") if instruction.startswith(k))]

    config = write_config(tmp_path / "config", settings={"graph.max_turns": 2})
    with OllamaStandIn(models=["llama3.2:3b", "phi3:mini", "gemma2:2b"], responder=responder) as server:
        backend = BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host})
        with backend:
            assert backend.request("ping")["provider"] == "ollama"
            state = backend.request("get_state")["state"]
            assert "all persona models present" in state["provider_reason"]
            events = backend.subscribe()
            task_id = backend.request("submit_task", text="It is raining. What should I wear?")["task_id"]
            final = wait_for_task(events, task_id, {"done", "failed"}, 60)
            events.close()
    assert final["status"] == "done" and final["result"] == "Take a raincoat." and final["turns"] == 1
    assert "model provider: ollama" in backend.output()
    # sequential residency: whenever a model answered, at most that one model was loaded
    assert residency and all(len(loaded) <= 1 for loaded in residency)
    models_used = [r[0] for r in residency if r]
    assert {"llama3.2:3b", "phi3:mini", "gemma2:2b"} <= set(models_used)
