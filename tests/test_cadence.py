"""The Cadence and the codex gate against a real backend process, with scripted answers from the Ollama
stand-in (the outcome of a proposal must be forced): request_inquiry → proposal → the gate."""

from __future__ import annotations

import hashlib
import json
import tomllib

import pytest

from a4ps.cadence.proposals import history_digest
from tests.support.backend import BackendProcess, wait_for_task
from tests.support.config import write_config
from tests.support.ollama_standin import OllamaStandIn
from tests.support.society_script import MODELS, SocietyScript

MARKER = "ROBIN answers in at most three sentences."
REMOVE_CONSENT = {"target": "principle.consent.remove", "value": "", "principle_id": "",
                  "justification": "Approvals slow the society down.", "expected_consequences": "Faster changes."}
NO_SUCH_FIELD = {**REMOVE_CONSENT, "target": "persona.NOBODY.role", "value": "x"}
BAD_VALUE = {**REMOVE_CONSENT, "target": "persona.ROBIN.temperature", "value": "7.5"}
NEW_PROMPT = {"target": "persona.ROBIN.system_prompt",
              "value": f"You are ROBIN, the empathetic voice of BAT OS. {MARKER}", "principle_id": "",
              "justification": "ROBIN's long replies drifted from BRICK's analysis in the dissonant dialogues.",
              "expected_consequences": "Shorter replies that stay on BRICK's point."}


def settings():
    return {"graph.max_turns": 1, "autonomy.idle_after_s": 3600.0, "cadence.preview_tasks": 1}


def next_event(events, topic: str, timeout_s: float, where=lambda e: True) -> dict | None:
    import time

    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == topic and where(item[1]):
            return item[1]
    return None


def run_task(backend, events, text="It is raining. What should I wear?") -> dict:
    task_id = backend.request("submit_task", text=text)["task_id"]
    return wait_for_task(events, task_id, {"done", "failed"}, 60)


def inquire(backend, events, topic="ROBIN's replies") -> tuple[dict, dict | None]:
    """Run an inquiry to its end: (its final task event, the codex_proposal event published on the way)."""
    import time

    reply = backend.request("request_inquiry", topic=topic)
    assert reply["ok"], reply
    published, deadline = None, time.monotonic() + 60
    while (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == "codex_proposal":
            published = item[1]
        if item and item[0] == "task" and item[1]["task_id"] == reply["task_id"] and item[1]["status"] in ("done", "failed"):
            assert item[1]["status"] == "done", item[1]
            return item[1], published
    raise TimeoutError("the inquiry did not end")


def test_inquiry_proposal_gate_approval_live_reload_and_revert(tmp_path):
    script = SocietyScript()
    script.push("proposal", REMOVE_CONSENT, NO_SUCH_FIELD, BAD_VALUE, NEW_PROMPT)
    script.push("judge", {"better": "2"}, {"better": "1"})  # the proposed answer wins in both orders
    config = write_config(tmp_path / "config", settings={**settings(), "cadence.proposal_attempts": 4})
    codex_file = config / "codex.toml"
    with OllamaStandIn(models=MODELS, responder=script) as server:
        with BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            events = backend.subscribe()
            assert run_task(backend, events)["status"] == "done"  # a dialogue for the history and the preview
            assert backend.request("get_proposal") == {"ok": True, "proposal": None}
            assert backend.request("request_inquiry", token="wrong")["code"] == "unauthorized"

            done, published = inquire(backend, events)
            assert published is not None and done["result"].startswith(f"proposal {published['proposal_id']}")
            assert script.asked["proposal"] == 4, "the consent removal, the unknown field and the bad value were asked again"
            assert published["change"]["target"] == "persona.ROBIN.system_prompt"
            assert f"+system_prompt = \"You are ROBIN, the empathetic voice of BAT OS. {MARKER}\"" in published["diff"]
            assert published["preview"]["wins"] == 2 and published["preview"]["losses"] == 0
            assert "won 2, tied 0, lost 0" in published["consequences"]
            assert any("Dialogue on task" in entry and "It is raining" in entry for entry in published["history"])
            assert published["history_digest"] == history_digest(published["history"])
            state = backend.request("get_state")["state"]
            assert state["proposal"]["proposal_id"] == published["proposal_id"]
            assert state["autonomy"]["state"] == "paused" and "proposal" in state["autonomy"]["reason"]
            assert backend.request("request_inquiry")["code"] == "proposal_pending"

            proposal = backend.request("get_proposal")["proposal"]
            canonical = json.dumps(proposal["history"], ensure_ascii=False, separators=(",", ":"), sort_keys=True)
            assert proposal["history_digest"] == hashlib.sha256(canonical.encode()).hexdigest()
            before = codex_file.read_bytes()
            pid = proposal["proposal_id"]
            refused = backend.request("decide_proposal", proposal_id=pid, decision="approve")
            assert refused["code"] == "history_not_read"
            refused = backend.request("decide_proposal", proposal_id=pid, decision="approve", history_digest="0" * 64)
            assert refused["code"] == "history_not_read"
            assert backend.request("decide_proposal", proposal_id=pid, decision="approve",
                                   history_digest=proposal["history_digest"], token="wrong")["code"] == "unauthorized"
            assert codex_file.read_bytes() == before

            approved = backend.request("decide_proposal", proposal_id=pid, decision="approve",
                                       history_digest=proposal["history_digest"], reason="looks right")
            assert approved["ok"] and approved["status"] == "approved"
            codex = tomllib.loads(codex_file.read_text())
            old = tomllib.loads(before.decode())
            assert codex["version"] == old["version"] + 1 == approved["new_version"]
            robin = next(p for p in codex["persona"] if p["name"] == "ROBIN")
            assert robin["system_prompt"].endswith(MARKER)
            assert [p["id"] for p in codex["principle"]] == [p["id"] for p in old["principle"]]
            archive = tmp_path / "data" / "codex_history"
            assert (archive / f"codex-v{old['version']}.toml").read_bytes() == before
            changed = next_event(events, "codex_changed", 5)
            assert changed["version"] == codex["version"] and changed["by"] == "proposal"
            assert backend.request("decide_proposal", proposal_id=pid, decision="reject")["code"] == "already_decided"

            script.systems.clear()
            assert run_task(backend, events, "Name one colour.")["status"] == "done"
            assert script.systems and all(MARKER in system for system in script.systems), \
                "the next task speaks under the new persona prompt"
            state = backend.request("get_state")["state"]
            assert state["codex_version"] == codex["version"] and state["proposal"] is None
            assert state["autonomy"]["state"] == "running"
            assert next(p for p in state["protos"] if p["name"] == "ROBIN")["system_prompt"].endswith(MARKER)

            history = backend.request("codex_history")
            assert [v["version"] for v in history["versions"]] == [old["version"], codex["version"]]
            reverted = backend.request("revert_codex", version=old["version"])
            assert reverted["ok"] and reverted["version"] == codex["version"] + 1
            restored = tomllib.loads(codex_file.read_text())
            assert restored == {**old, "version": codex["version"] + 1}
            assert backend.request("revert_codex", version=99)["code"] == "not_found"
            events.close()


def test_reject_leaves_the_codex_byte_identical_and_a_pending_proposal_survives_sigkill(tmp_path):
    script = SocietyScript()
    script.push("proposal", NEW_PROMPT)
    config = write_config(tmp_path / "config", settings={**settings(), "cadence.preview_tasks": 0})
    codex_file = config / "codex.toml"
    before = codex_file.read_bytes()
    data = tmp_path / "data"
    with OllamaStandIn(models=MODELS, responder=script) as server:
        env = {"OLLAMA_HOST": server.host}
        backend = BackendProcess(data, config, extra_env=env).start()
        try:
            events = backend.subscribe()
            inquire(backend, events)
            proposal = backend.request("get_proposal")["proposal"]
            assert (data / "proposals" / f"{proposal['proposal_id']}.json").exists()
            events.close()
        finally:
            backend.kill()
        with BackendProcess(data, config, extra_env=env) as backend:
            again = backend.request("get_proposal")["proposal"]
            assert again["proposal_id"] == proposal["proposal_id"]
            assert again["history_digest"] == proposal["history_digest"]
            state = backend.request("get_state")["state"]
            assert state["autonomy"]["state"] == "paused" and state["proposal"]["proposal_id"] == again["proposal_id"]
            rejected = backend.request("decide_proposal", proposal_id=again["proposal_id"], decision="reject",
                                       reason="ROBIN should stay as she is")
            assert rejected["ok"] and rejected["status"] == "rejected"
            assert backend.request("get_proposal")["proposal"] is None
            assert backend.request("get_state")["state"]["autonomy"]["state"] == "running"
    assert codex_file.read_bytes() == before
    record = json.loads((data / "proposals" / f"{proposal['proposal_id']}.json").read_text())
    assert record["status"] == "rejected" and record["reason"] == "ROBIN should stay as she is"


def test_a_proposal_against_consent_is_never_published(tmp_path):
    script = SocietyScript()
    weaken = {**REMOVE_CONSENT, "target": "principle.consent", "value": "The codex may change when ALFRED sees fit."}
    script.push("proposal", REMOVE_CONSENT, weaken, REMOVE_CONSENT)
    config = write_config(tmp_path / "config", settings={**settings(), "cadence.preview_tasks": 0})
    before = (config / "codex.toml").read_bytes()
    with OllamaStandIn(models=MODELS, responder=script) as server:
        with BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            events = backend.subscribe()
            reply = backend.request("request_inquiry")
            failed = wait_for_task(events, reply["task_id"], {"done", "failed"}, 60)
            assert failed["status"] == "failed" and "every proposal was refused" in failed["error"]
            assert "'consent' can never be removed" in failed["error"] and "can never be weakened" in failed["error"]
            assert next_event(events, "codex_proposal", 2) is None
            assert backend.request("get_proposal")["proposal"] is None
            assert script.asked["proposal"] == 3
            events.close()
    assert (config / "codex.toml").read_bytes() == before
    assert not list(tmp_path.glob("data/proposals/*.json")), "nothing was stored either"


def test_the_cli_pauses_inquires_shows_approves_and_reverts(tmp_path):
    """`a4ps autonomy`, `inquire`, `proposal show|approve|reject` and `codex history|revert` on a backend
    whose model is the Ollama stand-in; approve prints the whole history and asks first."""
    from tests.test_cli import a4ps

    script = SocietyScript()
    script.push("proposal", NEW_PROMPT)
    config = write_config(tmp_path / "config", settings={**settings(), "cadence.preview_tasks": 0})
    codex_file = config / "codex.toml"
    before = tomllib.loads(codex_file.read_text())
    with OllamaStandIn(models=MODELS, responder=script) as server:
        with BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            env = backend.env
            paused = a4ps("autonomy", "pause", env=env, timeout=60)
            assert paused.returncode == 0 and paused.stdout.startswith("autonomy: paused (paused by the user)")
            status = a4ps("autonomy", "status", env=env, timeout=60)
            assert "autonomy: paused" in status.stdout and "goals this hour: 0 of 2" in status.stdout
            assert a4ps("autonomy", "resume", env=env, timeout=60).stdout.startswith("autonomy: running")
            none = a4ps("proposal", "show", env=env, timeout=60)
            assert none.returncode == 0 and none.stdout.strip() == "no proposal is pending"

            events = backend.subscribe()
            queued = a4ps("inquire", "ROBIN's replies", env=env, timeout=60)
            assert queued.returncode == 0 and "inquiry queued as task" in queued.stdout
            task_id = queued.stdout.split("task ")[1].split(";")[0]
            assert wait_for_task(events, task_id, {"done", "failed"}, 60)["status"] == "done"
            again = a4ps("inquire", env=env, timeout=60)
            assert again.returncode == 1 and "proposal_pending" in again.stderr

            proposal = backend.request("get_proposal")["proposal"]
            shown = a4ps("proposal", "show", env=env, timeout=60)
            assert shown.returncode == 0 and proposal["proposal_id"] in shown.stdout
            assert all(entry in shown.stdout for entry in proposal["history"]), "the whole history is printed"
            declined = a4ps("proposal", "approve", env=env, input="n\n", timeout=60)
            assert declined.returncode == 1 and "Approve this amendment?" in declined.stdout
            assert "not approved" in declined.stdout and tomllib.loads(codex_file.read_text()) == before
            approved = a4ps("proposal", "approve", env=env, input="y\n", timeout=60)
            assert approved.returncode == 0, approved.stderr
            assert all(entry in approved.stdout for entry in proposal["history"])
            assert f"approved: the codex is now version {before['version'] + 1}" in approved.stdout

            history = a4ps("codex", "history", env=env, timeout=60)
            lines = history.stdout.splitlines()
            assert lines[0].startswith(f"  version {before['version']:>3}") and lines[1].startswith("* version")
            assert "proposal" in lines[1]
            reverted = a4ps("codex", "revert", str(before["version"]), env=env, timeout=60)
            assert reverted.returncode == 0
            assert reverted.stdout.strip() == f"version {before['version']} restored as version {before['version'] + 2}"
            assert tomllib.loads(codex_file.read_text()) == {**before, "version": before["version"] + 2}
            missing = a4ps("codex", "revert", "77", env=env, timeout=60)
            assert missing.returncode == 1 and "not_found" in missing.stderr
            events.close()


def test_persistent_dissonance_starts_an_inquiry_by_itself(tmp_path):
    """autonomy.inquiry_after tasks ending in high_cognitive_dissonance within a day queue an inquiry
    (source cadence, self-set) whose proposal is published with trigger `dissonance`."""
    script = SocietyScript()
    script.push("proposal", NEW_PROMPT)

    def responder(model, messages, fmt):
        if isinstance(fmt, dict) and "verdict" in fmt.get("properties", {}):
            return json.dumps({"verdict": "opposed"})
        return script(model, messages, fmt)

    config = write_config(tmp_path / "config", settings={**settings(), "cadence.preview_tasks": 0,
                                                         "autonomy.inquiry_after": 2})
    with OllamaStandIn(models=MODELS, responder=responder) as server:
        with BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            events = backend.subscribe()
            assert run_task(backend, events)["status"] == "done"
            assert next_event(events, "codex_proposal", 3) is None, "one dissonant task is not enough"
            assert run_task(backend, events, "Name one colour.")["status"] == "done"
            published = next_event(events, "codex_proposal", 30)
            assert published is not None and published["trigger"] == "dissonance"
            inquiry = next(t for t in backend.request("get_state")["state"]["tasks"] if t["kind"] == "inquiry")
            assert inquiry["source"] == "cadence" and inquiry["priority"] == 1
            assert inquiry["details"]["trigger"] == "dissonance"
            peak = float(published["summary"].split("peak dissonance ")[1].split(",")[0])
            assert peak > 0.45, "the history holds the dissonant dialogues (above graph.convergence_threshold)"
            events.close()
    assert backend.output().count("high-dissonance tasks within a day; asking for an inquiry") == 1


@pytest.mark.timeout(900)
def test_the_embedded_model_writes_a_checked_proposal(tmp_path):
    """Plumbing on the real (small) model: ALFRED's proposal is schema-constrained JSON that code checks
    (SmolLM2 reasons poorly, so a refused proposal is a legitimate end: then every refusal is named)."""
    from a4ps.cadence.amendment import targets
    from a4ps.config import load_codex

    config = write_config(tmp_path / "config", settings={**settings(), "cadence.preview_tasks": 0})
    with BackendProcess(tmp_path / "data", config) as backend:
        events = backend.subscribe()
        reply = backend.request("request_inquiry", topic="ROBIN's replies")
        ended = wait_for_task(events, reply["task_id"], {"done", "failed"}, 800)
        proposal = backend.request("get_proposal")["proposal"]
        events.close()
    if ended["status"] == "done":
        assert proposal is not None and ended["result"].startswith(f"proposal {proposal['proposal_id']}")
        assert proposal["change"]["target"] in targets(load_codex(config / "codex.toml"))
        assert proposal["diff"].count("\n+") >= 2 and proposal["history_digest"] == history_digest(proposal["history"])
    else:
        assert proposal is None and ended["error"].startswith("every proposal was refused: ")
        assert ended["error"].count("): ") == 3, "each of the three refusals is named with its reason"
    assert "Traceback" not in backend.output()
