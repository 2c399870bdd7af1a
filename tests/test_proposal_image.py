"""The pending proposal is kept whole in the living image as well as in data/proposals/<id>.json, against
a real backend process with scripted answers from the Ollama stand-in: a file lost or damaged while the
backend was down is restored from the image and stays decidable with the same digest; where the image and
the file differ, the file (where decisions are written) wins; a decided proposal leaves the image; an
inquiry run again after a crash finds the proposal it made and asks nothing."""

from __future__ import annotations

import json
import tomllib

from a4ps.protos import LivingImage
from tests.support.backend import BackendProcess, wait_for_task
from tests.support.config import write_config
from tests.support.ollama_standin import OllamaStandIn
from tests.support.society_script import MODELS, SocietyScript
from tests.test_cadence import MARKER, NEW_PROMPT, inquire, settings


def requeue_inquiry_in_image(data) -> str:
    """Sign a checkpoint whose inquiry task still waits, as when the SIGKILL came after the proposal was
    stored but before the image recorded the task's end; returns the task id."""
    image = LivingImage(data / "image", data / "image.key", 5)
    state, _ = image.load_latest()
    inquiry = next(t for t in state["tasks"] if t["kind"] == "inquiry")
    inquiry.update(status="queued", started_at=None, finished_at=None, result=None)
    image.save(state)
    return inquiry["task_id"]


def kept_in_image(data) -> dict | None:
    state, _ = LivingImage(data / "image", data / "image.key", 5).load_latest()
    assert state is not None and "proposal_id" not in state
    return state["proposal"]


def propose(data, config, env) -> dict:
    """Run an inquiry to its proposal, then SIGKILL the backend: the proposal as get_proposal gave it."""
    backend = BackendProcess(data, config, extra_env=env).start()
    try:
        events = backend.subscribe()
        inquire(backend, events)
        events.close()
        return backend.request("get_proposal")["proposal"]
    finally:
        backend.kill()


def test_a_deleted_proposal_file_is_restored_from_the_image_and_its_approval_applies(tmp_path):
    script = SocietyScript()
    script.push("proposal", NEW_PROMPT)
    config = write_config(tmp_path / "config", settings={**settings(), "cadence.preview_tasks": 0})
    version = tomllib.loads((config / "codex.toml").read_text())["version"]
    data = tmp_path / "data"
    with OllamaStandIn(models=MODELS, responder=script) as server:
        env = {"OLLAMA_HOST": server.host}
        proposal = propose(data, config, env)
        assert kept_in_image(data) == proposal, "the image holds the whole proposal, history and digest included"
        path = data / "proposals" / f"{proposal['proposal_id']}.json"
        path.unlink()
        inquiry = requeue_inquiry_in_image(data)
        with BackendProcess(data, config, extra_env=env) as backend:
            events = backend.subscribe()
            again = backend.request("get_proposal")["proposal"]
            assert again == proposal
            rerun = wait_for_task(events, inquiry, {"done", "failed"}, 60, backend)
            assert rerun["status"] == "done" and rerun["result"].startswith(f"proposal {proposal['proposal_id']}")
            assert script.asked["proposal"] == 1, "the inquiry run again found its proposal and asked nothing"
            assert backend.request("get_proposal")["proposal"] == proposal
            events.close()
            state = backend.request("get_state")["state"]
            assert state["proposal"]["proposal_id"] == proposal["proposal_id"]
            assert state["autonomy"]["state"] == "paused" and "proposal" in state["autonomy"]["reason"]
            assert json.loads(path.read_text())["status"] == "pending", "the file was written again"
            approved = backend.request("decide_proposal", proposal_id=proposal["proposal_id"], decision="approve",
                                       history_digest=proposal["history_digest"])
            assert approved["ok"] and approved["status"] == "approved" and approved["new_version"] == version + 1
            assert kept_in_image(data) is None, "a decided proposal leaves the image"
            assert backend.request("get_state")["state"]["autonomy"]["state"] == "running"
    codex = tomllib.loads((config / "codex.toml").read_text())
    assert codex["version"] == version + 1
    assert next(p for p in codex["persona"] if p["name"] == "ROBIN")["system_prompt"].endswith(MARKER)
    assert json.loads(path.read_text())["status"] == "approved"
    assert f"proposal {proposal['proposal_id']} (pending) restored from the living image" in backend.output()
    assert f"inquiry {inquiry} made proposal {proposal['proposal_id']} before a restart" in backend.output()


def test_a_damaged_file_is_restored_and_where_image_and_file_differ_the_file_wins(tmp_path):
    script = SocietyScript()
    script.push("proposal", NEW_PROMPT)
    config = write_config(tmp_path / "config", settings={**settings(), "cadence.preview_tasks": 0})
    data = tmp_path / "data"
    with OllamaStandIn(models=MODELS, responder=script) as server:
        env = {"OLLAMA_HOST": server.host}
        proposal = propose(data, config, env)
        pid = proposal["proposal_id"]
        path = data / "proposals" / f"{pid}.json"
        path.write_text('{"proposal_id": "' + pid + '", "status": "pen')  # torn
        with BackendProcess(data, config, extra_env=env) as backend:
            assert backend.request("get_proposal")["proposal"] == proposal
        assert (data / "proposals" / f"{pid}.json.damaged").read_text().endswith('"pen'), "kept aside, not lost"
        assert "is damaged" in backend.output() and "restored from the living image" in backend.output()

        edited = {**json.loads(path.read_text()), "justification": "Edited in the file after the image was saved."}
        path.write_text(json.dumps(edited))
        with BackendProcess(data, config, extra_env=env) as backend:
            shown = backend.request("get_proposal")["proposal"]
            assert shown["justification"] == edited["justification"]
            assert shown["history_digest"] == proposal["history_digest"]
        assert kept_in_image(data)["justification"] == edited["justification"], "the image took the file's copy"
        assert f"proposal {pid}: the living image's copy (pending) differs from its file (pending); the file wins" \
            in backend.output()

        path.write_text(json.dumps({**edited, "status": "rejected", "reason": "decided before the image was saved"}))
        with BackendProcess(data, config, extra_env=env) as backend:
            assert backend.request("get_proposal")["proposal"] is None
            assert backend.request("get_state")["state"]["autonomy"]["state"] == "running"
        assert kept_in_image(data) is None
        assert "differs from its file (rejected); the file wins" in backend.output()
    assert json.loads(path.read_text())["status"] == "rejected", "the restore never overwrote a readable file"
