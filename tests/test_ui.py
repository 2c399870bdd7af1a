"""The Entropic UI in a real window (SDL offscreen) against a real backend subprocess over ZeroMQ."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.ui_harness import (ProtocolPeer, UnitTestTouch, drag, open_modals, press_enter, pump,
                                     round_trip, running_workspace, screenshot, settle, tap, type_text, ui_settings,
                                     wait_stable, wait_until, wheel)
from tests.support.backend import BackendProcess
from tests.support.config import write_config
from a4ps.cadence.proposals import history_digest
from a4ps.ui.approval_dialog import ApprovalDialog
from a4ps.ui.dialogue_log import MessageEntry, NoteEntry
from a4ps.ui.inspector import ProtoInspector, ToolInspector

FINISHED = ("done", "failed", "cancelled")


@pytest.fixture
def workspace(backend, tmp_path):
    settings = ui_settings(backend.config_dir, tmp_path / "ui-data", backend.pub_addr, backend.rep_addr)
    with running_workspace(settings, backend.token_file) as ws:
        wait_until(lambda: ws.snapshots > 0 and len(ws.morph_canvas.protos) == 3, 30, "the join snapshot")
        yield ws


def backend_proto(backend, name: str) -> dict:
    state = backend.request("get_state")["state"]
    return next(p for p in state["protos"] if p["name"] == name)


def task_events(events, task_id: str) -> list[tuple[str, dict]]:
    return [(topic, event) for topic, event in events.drain(100_000) if event.get("task_id") == task_id]


def test_snapshot_shows_personas_provider_and_connection(workspace, backend):
    state = backend.request("get_state")["state"]
    assert set(workspace.morph_canvas.protos) == {"ALFRED", "BRICK", "ROBIN"}
    for proto in state["protos"]:
        morph = workspace.morph_canvas.protos[proto["name"]]
        assert morph._name.text == proto["name"]
        assert morph._model.text == proto["model"]
        assert morph._status.text == proto["status"]
    wait_until(lambda: workspace.status_bar.connected is True, 10, "the first ping")
    assert "connected" in workspace.status_bar.connection.text
    assert workspace.status_bar.provider == state["provider"] == "embedded"
    assert workspace.status_bar.autonomy == state["autonomy"]["state"]


def test_typed_task_streams_the_dialogue_token_by_token(workspace, backend, tmp_path):
    events = backend.subscribe()
    text = "Name two colours of the evening sky."
    tap(workspace.task_box.input)
    type_text(text)
    assert workspace.task_box.input.text == text
    press_enter()
    wait_until(lambda: any(h.task.get("text") == text for h in workspace.dialogue.headers.values()), 20,
               "the task header")
    task_id = next(i for i, h in workspace.dialogue.headers.items() if h.task.get("text") == text)
    wait_until(lambda: workspace.task_box.input.text == "", 5, "the box to clear once the task is queued")

    def streaming():
        return any(not m.closed and m.body for k, m in workspace.dialogue.messages.items() if k[0] == task_id)

    wait_until(streaming, 120, "a message that is still streaming")
    assert not workspace.task_box.stop_button.disabled
    screenshot(tmp_path / "screenshot-streaming.png")
    wait_until(lambda: workspace.tasks[task_id].get("status") in FINISHED, 300, "the end of the task")
    wait_stable(lambda: len(workspace.dialogue.body.children), 10, "the dialogue to stop growing")
    shot = screenshot(tmp_path / "screenshot.png")
    assert shot.stat().st_size > 20_000

    seen = task_events(events, task_id)
    events.close()
    tokens = [e for t, e in seen if t == "token"]
    utterances = [e for t, e in seen if t == "utterance"]
    assert utterances and len(tokens) > len(utterances), "the backend streamed more tokens than utterances"
    for utterance in utterances:
        key = (task_id, utterance["persona"], utterance["node"], utterance["turn"])
        entry = workspace.dialogue.messages[key]
        assert entry.closed
        if utterance["text"].strip():
            assert entry.body == utterance["text"]
        assert utterance["persona"] in entry.text
    final = next(e for t, e in reversed(seen) if t == "task")
    header = workspace.dialogue.headers[task_id]
    assert header.status == final["status"] and final["status"].upper() in header.text
    scored = {e["turn"]: e["value"] for t, e in seen if t == "dissonance"}
    assert workspace.plot.values.get(task_id, {}) == scored
    assert workspace.task_box.stop_button.disabled


def submit(workspace, text: str) -> None:
    tap(workspace.task_box.input)
    type_text(text)
    tap(workspace.task_box.send_button)
    wait_until(lambda: workspace.task_box.input.text == "", 20, f"{text!r} to be queued")


def header_for(workspace, text: str):
    return next((h for h in workspace.dialogue.headers.values() if h.task.get("text") == text), None)


def test_earlier_tasks_stay_readable_and_stop_cancels_the_running_one(workspace, backend):
    first, second = "Say hello to the user.", "Write a long, careful essay about patience."
    submit(workspace, first)
    submit(workspace, second)
    wait_until(lambda: header_for(workspace, second) is not None, 10, "the second header")
    earlier = header_for(workspace, first)
    assert header_for(workspace, second).status in ("queued", "running")
    wait_until(lambda: earlier.status in FINISHED, 300, "the first task to end")
    kept = [m for k, m in workspace.dialogue.messages.items() if k[0] == earlier.task_id]
    assert kept, "the first task said something"

    later = header_for(workspace, second)
    wait_until(lambda: later.status == "running", 60, "the second task to run")
    wait_until(lambda: workspace.stop_target() == later.task_id and not workspace.task_box.stop_button.disabled,
               10, "Stop to target the running task")
    tap(workspace.task_box.stop_button)
    wait_until(lambda: later.status == "cancelled", 120, "the cancellation")
    assert any(isinstance(e, NoteEntry) and "cancelled" in e.text for e in workspace.dialogue.body.children)
    state = backend.request("get_state")["state"]
    assert next(t for t in state["tasks"] if t["task_id"] == later.task_id)["status"] == "cancelled"
    assert workspace.task_box.stop_button.disabled
    assert earlier.parent is workspace.dialogue.body and all(m.parent is workspace.dialogue.body for m in kept)
    assert earlier.status in FINISHED and earlier.task["text"] == first


def test_drag_moves_a_morph_and_its_place_survives_a_restart(backend, tmp_path):
    settings = ui_settings(backend.config_dir, tmp_path / "ui-data", backend.pub_addr, backend.rep_addr)
    with running_workspace(settings) as ws:
        wait_until(lambda: len(ws.morph_canvas.protos) == 3, 30, "the protos")
        brick, alfred = ws.morph_canvas.protos["BRICK"], ws.morph_canvas.protos["ALFRED"]
        start, alfred_start = wait_stable(lambda: (tuple(brick.pos), tuple(alfred.pos)), 10, "the morphs placed")
        tap(brick)
        assert tuple(brick.pos) == start, "a tap is not a drag"
        drag(brick, 140, -90)
        moved = tuple(brick.pos)
        assert moved == pytest.approx((start[0] + 140, start[1] - 90), abs=1.5)
        assert tuple(alfred.pos) == alfred_start
        stored = json.loads((tmp_path / "ui-data" / "ui" / "morph_positions.json").read_text())
        assert stored["proto:BRICK"] == pytest.approx(brick.frac, abs=1e-4)
        assert "proto:ALFRED" not in stored
    with running_workspace(settings) as ws:
        wait_until(lambda: len(ws.morph_canvas.protos) == 3, 30, "the protos after the restart")
        brick_now, alfred_now = wait_stable(lambda: (tuple(ws.morph_canvas.protos["BRICK"].pos),
                                                     tuple(ws.morph_canvas.protos["ALFRED"].pos)), 10,
                                            "the morphs placed after the restart")
        assert brick_now == pytest.approx(moved, abs=1.5) and alfred_now == pytest.approx(alfred_start, abs=1.5)


def test_inspector_edit_reaches_the_backend_and_comes_back(workspace, backend, tmp_path):
    original = backend_proto(backend, "ROBIN")
    morph = workspace.morph_canvas.protos["ROBIN"]
    try:
        tap(morph, button="right")
        wait_until(lambda: "ROBIN" in workspace.inspectors, 5, "the Inspector")
        inspector = workspace.inspectors["ROBIN"]
        assert isinstance(inspector, ProtoInspector) and inspector in open_modals()
        wait_until(lambda: inspector.prompt_input.text == original["system_prompt"], 5, "the live prompt shown")
        screenshot(tmp_path / "screenshot-inspector.png")

        inspector.max_tokens_input.text = "5"
        tap(inspector.apply_button)
        assert "between 16 and 4096" in inspector.message.text
        assert backend_proto(backend, "ROBIN")["max_tokens"] == original["max_tokens"]

        inspector.max_tokens_input.text = "200"
        inspector.temperature.slider.value = 0.35
        tap(inspector.prompt_input)
        inspector.prompt_input.do_cursor_movement("cursor_end", control=True)
        type_text(" Answer in short sentences.")
        tap(inspector.apply_button)
        wait_until(lambda: inspector.message.text.startswith("Applied"), 15, "the update_proto reply")

        now = backend_proto(backend, "ROBIN")
        assert now["temperature"] == 0.35 and now["max_tokens"] == 200
        assert now["system_prompt"] == original["system_prompt"] + " Answer in short sentences."
        assert morph.proto["temperature"] == 0.35 and morph.proto["system_prompt"] == now["system_prompt"]

        backend.request("update_proto", name="ROBIN", changes={"model": "robin-surgery-test"})
        wait_until(lambda: morph._model.text == "robin-surgery-test", 10, "the proto event on the morph")
        assert "robin-surgery-test" in inspector.live.text
        tap(inspector.close_button)
        wait_until(lambda: inspector not in open_modals(), 5, "the Inspector to close")
        assert "ROBIN" not in workspace.inspectors
    finally:
        backend.request("update_proto", name="ROBIN", changes={
            k: original[k] for k in ("system_prompt", "temperature", "top_p", "max_tokens", "model")})


def test_holding_a_morph_opens_its_inspector_without_moving_it(workspace):
    brick = workspace.morph_canvas.protos["BRICK"]
    start = tuple(brick.pos)
    x, y = brick.to_window(*brick.center)
    touch = UnitTestTouch(x, y)
    touch.touch_down()
    settle(1.0)
    touch.touch_up()
    pump(2)
    wait_until(lambda: "BRICK" in workspace.inspectors, 5, "the Inspector after a long press")
    assert workspace.inspectors["BRICK"] in open_modals() and tuple(brick.pos) == start
    tap(brick, button="right")
    assert [m for m in open_modals() if isinstance(m, ProtoInspector)] == [workspace.inspectors["BRICK"]]


TOOL = {"name": "word_count", "docstring": "Count the words in a text.", "signature": "word_count(text: str) -> int",
        "spec": "Return how many whitespace-separated words `text` has.",
        "source": "def word_count(text: str) -> int:\n    return len(text.split())\n",
        "tests": "assert word_count('a b') == 2\n", "status": "registered", "created_at": 1_790_000_000.0,
        "model": "smollm2-135m-instruct", "source_hash": "9f2c" * 16}


def test_tool_created_event_makes_a_tool_morph_that_shows_its_source(workspace):
    assert workspace.morph_canvas.tools == {}
    workspace.handle_event("tool_created", {"topic": "tool_created", "seq": 1, "time": time.time(), "tool": TOOL})
    second = {**TOOL, "name": "reverse_words", "signature": "reverse_words(text: str) -> str"}
    workspace.handle_event("tool_created", {"topic": "tool_created", "seq": 2, "time": time.time(), "tool": second})
    workspace.handle_event("tool_created", {"topic": "tool_created", "seq": 3, "time": time.time(), "tool": TOOL})
    assert set(workspace.morph_canvas.tools) == {"word_count", "reverse_words"}
    morph = workspace.morph_canvas.tools["word_count"]
    wait_stable(lambda: [tuple(m.pos) for m in workspace.morph_canvas.tools.values()], 10, "the tool morphs placed")
    assert morph.parent is workspace.morph_canvas
    assert morph._signature.text == TOOL["signature"]
    assert not morph.collide_widget(workspace.morph_canvas.tools["reverse_words"])
    assert sum(1 for e in workspace.dialogue.body.children
               if isinstance(e, NoteEntry) and "New tool" in e.text) == 3
    tap(morph)
    wait_until(lambda: any(isinstance(m, ToolInspector) for m in open_modals()), 5, "the tool view")
    view = next(m for m in open_modals() if isinstance(m, ToolInspector))
    shown = "\n".join(getattr(w, "text", "") for w in view.body.walk())
    assert "return len(text.split())" in shown and TOOL["spec"] in shown


def proposal_event(pid: str, entries: int = 24) -> dict:
    """A proposal map as `get_proposal` returns it (the fields the dialog reads)."""
    history = [f"Task {i}: BRICK and ROBIN disagreed about tone; dissonance 0.8{i % 10}. " * 3 for i in range(entries)]
    return {"proposal_id": pid,
            "diff": "--- codex.toml\n+++ codex.toml\n@@ principle 2 @@\n-Be brief.\n+Be brief, but never curt.\n",
            "history": history, "history_digest": history_digest(history),
            "consequences": "Answers get slightly longer; ROBIN's dissonance should drop.",
            "justification": "Persistent dissonance over curt answers."}


def test_approval_dialog_keeps_approve_disabled_until_the_history_is_read(workspace, tmp_path):
    workspace.open_approval(proposal_event("p-1"))
    dialog = workspace.approvals["p-1"]
    assert isinstance(dialog, ApprovalDialog) and dialog in open_modals()
    wait_until(lambda: dialog.history_body.height > dialog.history_scroll.height > 0, 10, "the history laid out")
    wait_stable(lambda: (tuple(dialog.approve_button.pos), dialog.history_scroll.scroll_y), 10, "the dialog opened")
    assert dialog.approve_button.disabled and not dialog.reject_button.disabled
    screenshot(tmp_path / "screenshot-approval.png")
    tap(dialog.approve_button)
    assert dialog.approve_button.disabled and "Sending" not in dialog.hint.text
    wheel(dialog.history_scroll, "scrollup")
    wait_until(lambda: dialog.history_scroll.scroll_y < 1, 5, "one notch of scrolling")
    assert 0 < wait_stable(lambda: dialog.history_scroll.scroll_y, 10, "the scroll to stop") < 1
    assert dialog.approve_button.disabled
    for _ in range(200):
        if dialog.history_scroll.scroll_y <= 0:
            break
        wheel(dialog.history_scroll, "scrollup")
    wait_until(lambda: not dialog.approve_button.disabled, 10, "Approve once the history was read")
    wheel(dialog.history_scroll, "scrolldown")
    wait_until(lambda: dialog.history_scroll.scroll_y > 0, 5, "scrolling back")
    assert not dialog.approve_button.disabled, "once read, scrolling back does not lock Approve again"


def test_decisions_reach_the_backend_with_the_proof_of_reading(tmp_path):
    peer = ProtocolPeer({"ping": {"ok": True, "pong": True, "provider": "embedded", "pid": 1, "time": 0.0},
                         "decide_proposal": {"ok": True, "status": "recorded"}})
    settings = ui_settings(write_config(tmp_path / "config"), tmp_path / "ui-data", peer.pub_addr, peer.rep_addr)
    try:
        with running_workspace(settings) as ws:
            wait_until(lambda: ws.status_bar.connected is True, 10, "the ping")
            dialog = ws.open_approval(proposal_event("p-7"))
            wait_stable(lambda: tuple(dialog.approve_button.pos), 10, "the dialog opened")
            tap(dialog.approve_button)
            round_trip(ws)  # a decision, had one been sent, would have been answered before this
            assert peer.commands("decide_proposal") == []
            for _ in range(200):
                if not dialog.approve_button.disabled:
                    break
                wheel(dialog.history_scroll, "scrollup")
            # A refusal shows the backend's reason and keeps the dialog open for another try.
            peer.set_reply("decide_proposal", {"ok": False, "code": "invalid_value",
                                               "error": "the history was not fetched"})
            tap(dialog.approve_button)
            wait_until(lambda: "did not take the decision" in dialog.hint.text, 10, "the refusal")
            assert "the history was not fetched" in dialog.hint.text
            assert dialog in open_modals() and not dialog.approve_button.disabled
            peer.set_reply("decide_proposal", {"ok": True, "status": "recorded"})
            tap(dialog.approve_button)
            wait_until(lambda: dialog not in open_modals(), 10, "the dialog to close")
            approval = {"cmd": "decide_proposal", "proposal_id": "p-7", "decision": "approve",
                        "history_digest": proposal_event("p-7")["history_digest"]}
            assert peer.commands("decide_proposal") == [approval, approval]

            unread = ws.open_approval(proposal_event("p-8"))
            wait_stable(lambda: tuple(unread.reject_button.pos), 10, "the second dialog opened")
            tap(unread.reject_button)
            wait_until(lambda: unread not in open_modals(), 10, "the rejected dialog to close")
            assert peer.commands("decide_proposal")[-1] == {
                "cmd": "decide_proposal", "proposal_id": "p-8", "decision": "reject"}
            assert any(isinstance(e, NoteEntry) and "rejected" in e.text for e in ws.dialogue.body.children)
    finally:
        peer.close()


def test_an_event_gap_makes_the_ui_fetch_a_fresh_snapshot(tmp_path):
    snapshot = {"provider": "ollama", "provider_reason": "test", "protos": [], "tasks": [], "current_task": None,
                "tools": [], "autonomy": {"state": "paused", "reason": "proposal"}, "image": {}}
    peer = ProtocolPeer({"ping": {"ok": True, "pong": True, "provider": "ollama", "pid": 1, "time": 0.0},
                         "get_state": {"ok": True, "state": snapshot}})
    settings = ui_settings(write_config(tmp_path / "config"), tmp_path / "ui-data", peer.pub_addr, peer.rep_addr)
    try:
        with running_workspace(settings) as ws:
            peer.wait_subscribed()
            wait_until(lambda: len(peer.commands("get_state")) == 1 and ws.snapshots == 1, 10, "the first snapshot")
            assert ws.status_bar.autonomy == "paused" and ws.status_bar.provider == "ollama"
            for seq in (1, 2, 5):  # 3 and 4 were lost
                peer.publish("log", {"seq": seq, "time": time.time(), "level": "INFO", "logger": "t",
                                     "message": f"event {seq}"})
            wait_until(lambda: len(peer.commands("get_state")) == 2, 10, "the resync request")
            wait_until(lambda: ws.snapshots == 2, 10, "the fresh snapshot")
            assert "event 5" in ws.status_bar.log_label.text
    finally:
        peer.close()


def test_a_late_snapshot_never_moves_a_task_backwards(tmp_path):
    """A resync's get_state reply that arrives after newer events is shown before them, never over
    them; an event older than the snapshot shown is dropped."""
    task = {"task_id": "t-1", "text": "Count to three.", "source": "user", "created_at": 1.0, "turns": 0,
            "dissonance": [], "result": None, "error": None}

    def state(status: str, seq: int) -> dict:
        snapshot = {"run_id": "r1", "provider": "embedded", "provider_reason": "test", "protos": [], "tools": [],
                    "tasks": [{**task, "status": status}], "current_task": None, "image": {},
                    "autonomy": {"state": "idle", "reason": ""}}
        return {"ok": True, "state": snapshot, "seq": seq}

    def log_event(seq: int, message: str) -> dict:
        return {"seq": seq, "time": time.time(), "level": "INFO", "logger": "t", "message": message}

    peer = ProtocolPeer({"ping": {"ok": True, "pong": True, "provider": "embedded", "pid": 1, "time": 0.0},
                         "get_state": state("running", 4)})
    settings = ui_settings(write_config(tmp_path / "config"), tmp_path / "ui-data", peer.pub_addr, peer.rep_addr)
    try:
        with running_workspace(settings) as ws:
            peer.wait_subscribed()
            wait_until(lambda: ws.tasks.get("t-1", {}).get("status") == "running", 10, "the first snapshot")
            peer.publish("task", {**task, "status": "done", "result": "3", "seq": 5, "time": time.time()})
            wait_until(lambda: ws.tasks["t-1"]["status"] == "done", 10, "the task's end")

            peer.hold("get_state")  # the next snapshot, reflecting seq 7, comes late
            peer.set_reply("get_state", state("running", 7))
            peer.publish("log", log_event(8, "after a gap"))  # 6 and 7 were lost: the UI resyncs
            wait_until(lambda: len(peer.commands("get_state")) == 2, 10, "the resync request")
            peer.publish("task", {**task, "status": "done", "result": "3", "seq": 9, "time": time.time()})
            settle(0.3)  # lets the UI drain seq 9 before the reply (the assertions hold either way)
            peer.release("get_state")
            wait_until(lambda: ws.snapshots == 2 and "after a gap" in ws.status_bar.log_label.text, 10,
                       "the late snapshot and the events held meanwhile")
            assert ws.tasks["t-1"]["status"] == "done" and ws.dialogue.headers["t-1"].status == "done"

            peer.publish("task", {**task, "status": "running", "seq": 6, "time": time.time()})  # older
            peer.publish("log", log_event(10, "newest"))
            wait_until(lambda: "newest" in ws.status_bar.log_label.text, 10, "the newest event")
            assert ws.tasks["t-1"]["status"] == "done", "an event the snapshot already reflects was applied"
    finally:
        peer.close()


def test_malformed_events_change_nothing_and_break_nothing(workspace):
    """Handled synchronously and checked before another frame runs, so events of the shared
    backend (a task still running from an earlier test) cannot blur the count."""
    shown = len(workspace.dialogue.body.children)
    protos, tools = dict(workspace.morph_canvas.protos), dict(workspace.morph_canvas.tools)
    for topic, event in [("proto", {"proto": "BRICK"}), ("proto", {"proto": {"name": 3}}), ("task", {"task_id": 5}),
                         ("token", {"persona": "BRICK", "text": "x"}), ("utterance", {"text": "x"}),
                         ("dissonance", {"task_id": "t", "turn": "one", "value": "high"}),
                         ("tool_created", {"tool": ["word_count"]}), ("state", {"snapshot": None}),
                         ("goal", {"goal": 5}), ("codex_changed", {"version": "three"}),
                         ("proposal_decided", {"proposal_id": ["p"]}), ("unknown_topic", {"anything": 1})]:
        workspace.handle_event(topic, event)
    workspace.open_approval({"diff": "x"})  # a proposal map without an id
    assert workspace.morph_canvas.protos == protos and workspace.morph_canvas.tools == tools
    assert set(protos) == {"ALFRED", "BRICK", "ROBIN"}
    assert workspace.plot.values.get("t") is None
    added = len(workspace.dialogue.body.children) - shown
    assert added == 1 and "Ignored a codex proposal" in workspace.dialogue.body.children[0].text
    assert not any(isinstance(e, MessageEntry) and e.body == "x" for e in workspace.dialogue.body.children)


def test_finetune_progress_draws_a_loss_line_and_the_end_of_the_job_is_noted(workspace, tmp_path):
    plot = workspace.loss_plot
    shown = len(workspace.dialogue.body.children)
    workspace.handle_event("finetune_job", {"job_id": "j1", "persona": "BRICK", "state": "running", "phase": "load"})
    for step, loss in enumerate([2.5, 2.1, 1.7, 1.2], 1):
        workspace.handle_event("finetune_progress", {"job_id": "j1", "persona": "BRICK", "step": step, "total": 6,
                                                     "loss": loss, "eta_s": 3.0 * (6 - step)})
    for bad in ({"job_id": 5, "step": 1, "loss": 9.0}, {"job_id": "j1", "step": "two", "loss": 9.0}, {}):
        workspace.handle_event("finetune_progress", bad)  # malformed: nothing changes
    assert plot.series() == [(1, 2.5), (2, 2.1), (3, 1.7), (4, 1.2)]
    assert plot.caption() == "BRICK · running · step 4/6 · eta 6 s"
    wait_stable(lambda: len(plot.canvas.children), 10, "the loss plot drawn")
    assert len(plot.canvas.children) > 10  # caption, axis, line and the last point
    screenshot(tmp_path / "screenshot-finetune.png")
    workspace.handle_event("finetune_job", {"job_id": "j1", "persona": "BRICK", "state": "done",
                                            "report": {"adapter_gguf": "/data/adapters/BRICK/j1/adapter.gguf"}})
    assert plot.caption() == "BRICK · done · step 4/6"
    assert len(workspace.dialogue.body.children) == shown + 1
    assert "Fine-tune of BRICK done: /data/adapters/BRICK/j1/adapter.gguf" in workspace.dialogue.body.children[0].text
    workspace.handle_event("finetune_progress", {"job_id": "j2", "persona": "ROBIN", "step": 1, "total": 30,
                                                 "loss": 3.0, "eta_s": 60})
    assert plot.series() == [(1, 3.0)] and plot.caption().startswith("ROBIN · running · step 1/30")


def test_the_log_streams_closes_and_drops_its_oldest_entries(monkeypatch):
    from a4ps.ui import dialogue_log

    monkeypatch.setattr(dialogue_log, "MAX_ENTRIES", 6)
    log = dialogue_log.DialogueLog()
    base = {"task_id": "t1", "persona": "BRICK", "node": "brick", "turn": 1}
    for piece in ("Bricks ", "are ", "[red]"):
        log.add_token({**base, "text": piece})
    entry = log.messages[("t1", "BRICK", "brick", 1)]
    assert entry.body == "Bricks are [red]" and not entry.closed and "speaking" in entry.text
    assert "&bl;red&br;" in entry.text, "model text is escaped, never taken as markup"
    log.add_utterance({**base, "text": "Bricks are red."})
    assert entry.closed and entry.body == "Bricks are red." and "speaking" not in entry.text
    assert log.headers["t1"].status == "running", "a header is made for a task first seen in a token"
    log.show_task({"task_id": "t1", "text": "Colours?", "status": "done", "result": "Red.", "turns": 1})
    synthesis = log.messages[("t1", "ALFRED", "alfred_synthesize", 1)]
    assert synthesis.body == "Red." and "1 turn" in log.headers["t1"].text
    for i in range(6):
        log.add_note(f"note {i}")
    assert len(log.body.children) == 6
    assert "t1" not in log.headers and log.messages == {}
    assert log.body.children[0].text == "note 5"


def test_status_bar_follows_the_backend_going_away_and_coming_back(tmp_path):
    proc = BackendProcess(tmp_path / "data", write_config(tmp_path / "config", settings={"graph.max_turns": 1}))
    settings = ui_settings(proc.config_dir, tmp_path / "ui-data", proc.pub_addr, proc.rep_addr)
    with running_workspace(settings) as ws:
        wait_until(lambda: ws.status_bar.connected is False, 15, "offline while no backend runs")
        assert "offline" in ws.status_bar.connection.text and ws.morph_canvas.protos == {}
        with proc:
            wait_until(lambda: ws.status_bar.connected is True and len(ws.morph_canvas.protos) == 3, 60,
                       "the reconnection and its snapshot")
            assert ws.status_bar.provider == "embedded"
        wait_until(lambda: ws.status_bar.connected is False, 15, "offline after the backend stopped")


def test_the_ui_fetches_proposals_reopens_them_marks_goals_and_switches_autonomy(tmp_path):
    """A `codex_proposal` event makes the window fetch the proposal (`get_proposal`: the history shown is
    the one fetched); a proposal decided elsewhere closes; a snapshot that still holds a pending proposal
    (after a reconnect) reopens it; self-set goals are marked in the log; the autonomy cell is a switch;
    the codex version is shown."""
    fetched = proposal_event("p-9", entries=3)
    snapshot = {"provider": "ollama", "provider_reason": "test", "protos": [], "tasks": [], "current_task": None,
                "tools": [], "image": {}, "codex_version": 4, "proposal": None,
                "autonomy": {"state": "running", "reason": "sets a goal", "goals_this_hour": 0, "budget": 2}}
    peer = ProtocolPeer({"ping": {"ok": True, "pong": True, "provider": "ollama", "pid": 1, "time": 0.0},
                         "get_state": {"ok": True, "state": snapshot},
                         "get_proposal": {"ok": True, "proposal": fetched},
                         "set_autonomy": {"ok": True, "autonomy": {"state": "paused", "reason": "paused by the user"}}})
    settings = ui_settings(write_config(tmp_path / "config"), tmp_path / "ui-data", peer.pub_addr, peer.rep_addr)
    try:
        with running_workspace(settings) as ws:
            peer.wait_subscribed()
            wait_until(lambda: ws.snapshots == 1, 10, "the first snapshot")
            assert ws.status_bar.codex_version == 4 and "v4" in ws.status_bar.codex_label.text
            assert ws.status_bar.autonomy == "running" and not ws.status_bar.autonomy_label.disabled
            wait_stable(lambda: tuple(ws.status_bar.autonomy_label.pos), 10, "the status bar laid out")

            tap(ws.status_bar.autonomy_label)
            wait_until(lambda: ws.status_bar.autonomy == "paused", 10, "the pause")
            assert peer.commands("set_autonomy")[-1]["state"] == "paused"
            peer.set_reply("set_autonomy", {"ok": True, "autonomy": {"state": "running", "reason": "sets a goal"}})
            tap(ws.status_bar.autonomy_label)
            wait_until(lambda: ws.status_bar.autonomy == "running", 10, "the resume")
            assert [c["state"] for c in peer.commands("set_autonomy")] == ["paused", "running"]

            now = time.time()
            peer.publish("goal", {"seq": 1, "time": now, "goal": "Compare two ways to sort words.",
                                  "why": "Sorting came up.", "trigger": "idle", "task_id": "g1"})
            wait_until(lambda: any(isinstance(e, NoteEntry) and e.text == "Self-set goal (idle): Compare two ways to "
                                   "sort words. — why: Sorting came up." for e in ws.dialogue.body.children),
                       10, "the goal in the log")
            peer.publish("task", {"seq": 2, "time": now, "task_id": "g1", "text": "Compare two ways to sort words.",
                                  "status": "queued", "source": "motivator", "priority": 1,
                                  "details": {"why": "Sorting came up.", "trigger": "idle"}})
            wait_until(lambda: "g1" in ws.dialogue.headers, 10, "the goal's task")
            header = ws.dialogue.headers["g1"].text
            assert "SELF-SET GOAL" in header and "why: Sorting came up." in header
            peer.publish("goal", {"seq": 3, "time": now, "goal": "Reflect on ROBIN's long replies.", "kind": "reflect",
                                  "why": "They drew dissonance.", "trigger": "idle", "task_id": "g2"})
            wait_until(lambda: any(isinstance(e, NoteEntry) and e.text == "Self-set reflection on the codex (idle): "
                                   "Reflect on ROBIN's long replies. — why: They drew dissonance."
                                   for e in ws.dialogue.body.children), 10, "the reflection in the log")

            peer.publish("codex_proposal", {"seq": 4, "time": now, "proposal_id": "p-9"})
            wait_until(lambda: "p-9" in ws.approvals, 10, "the dialog on the fetched proposal")
            dialog = ws.approvals["p-9"]
            assert dialog.proposal["history"] == fetched["history"] and len(peer.commands("get_proposal")) == 1
            peer.publish("proposal_decided", {"seq": 5, "time": now, "proposal_id": "p-9", "decision": "reject",
                                              "reason": "", "new_version": None})
            wait_until(lambda: "p-9" not in ws.approvals and dialog not in open_modals(), 10, "the dialog closed")

            peer.set_reply("get_state", {"ok": True, "state": {**snapshot, "proposal": {"proposal_id": "p-9"}}})
            peer.publish("log", {"seq": 7, "time": now, "level": "INFO", "logger": "t", "message": "after a gap"})
            wait_until(lambda: ws.snapshots == 2, 10, "the resync snapshot")
            wait_until(lambda: "p-9" in ws.approvals, 10, "the pending proposal reopened")
            assert len(peer.commands("get_proposal")) == 2
    finally:
        peer.close()


def test_the_approval_dialog_end_to_end_over_the_socket(tmp_path):
    """A real backend (scripted model: the Ollama stand-in): an inquiry's proposal opens the dialog with
    the history `get_proposal` gave, Approve sends its digest, the backend writes codex version + 1."""
    import tomllib

    from tests.support.ollama_standin import OllamaStandIn
    from tests.support.society_script import MODELS, SocietyScript
    from tests.test_cadence import NEW_PROMPT

    script = SocietyScript()
    script.push("proposal", NEW_PROMPT)
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 1, "autonomy.idle_after_s": 3600.0,
                                                         "cadence.preview_tasks": 0})
    before = tomllib.loads((config / "codex.toml").read_text())
    with OllamaStandIn(models=MODELS, responder=script) as server:
        with BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            settings = ui_settings(config, tmp_path / "ui-data", backend.pub_addr, backend.rep_addr)
            with running_workspace(settings, backend.token_file) as ws:
                wait_until(lambda: ws.snapshots > 0, 30, "the join snapshot")
                assert ws.status_bar.codex_version == before["version"]
                assert backend.request("request_inquiry", topic="ROBIN's replies")["ok"]
                wait_until(lambda: ws.approvals, 60, "the ApprovalDialog")
                dialog = next(iter(ws.approvals.values()))
                proposal = backend.request("get_proposal")["proposal"]
                assert dialog.proposal_id == proposal["proposal_id"] and dialog.proposal["history"] == proposal["history"]
                wait_stable(lambda: tuple(dialog.approve_button.pos), 10, "the dialog opened")
                for _ in range(200):
                    if not dialog.approve_button.disabled:
                        break
                    wheel(dialog.history_scroll, "scrollup")
                tap(dialog.approve_button)
                wait_until(lambda: dialog not in open_modals(), 30, "the dialog to close on approval")
                wait_until(lambda: ws.status_bar.codex_version == before["version"] + 1, 10, "the new codex version")
                assert backend.request("get_proposal")["proposal"] is None
    after = tomllib.loads((config / "codex.toml").read_text())
    assert after["version"] == before["version"] + 1
    assert next(p for p in after["persona"] if p["name"] == "ROBIN")["system_prompt"] == NEW_PROMPT["value"]


def test_every_done_task_gets_thumbs_that_send_rate_task_and_show_the_rating(tmp_path):
    """A done task gets a rating bar (a failed one does not); a thumb sends `rate_task` and lights up from
    the reply; a refused rating keeps the old one and says why; a `task_rated` event from elsewhere and
    the snapshot's `curator.ratings` (after a reconnect) show the rating too."""
    task = {"task_id": "t-1", "text": "Name a colour.", "source": "user", "created_at": 1.0, "turns": 1,
            "dissonance": [], "result": "Blue.", "error": None, "status": "done"}
    failed = {**task, "task_id": "t-2", "created_at": 2.0, "status": "failed", "result": None, "error": "model"}
    snapshot = {"run_id": "r1", "provider": "embedded", "provider_reason": "test", "protos": [], "tools": [],
                "tasks": [task, failed], "current_task": None, "image": {}, "codex_version": 3, "proposal": None,
                "autonomy": {"state": "running", "reason": ""}, "curator": {"ratings": {}}}
    peer = ProtocolPeer({"ping": {"ok": True, "pong": True, "provider": "embedded", "pid": 1, "time": 0.0},
                         "get_state": {"ok": True, "state": snapshot, "seq": 0},
                         "rate_task": {"ok": True, "task_id": "t-1", "rating": "up", "judged": True, "golden": True,
                                       "change": "added"}})
    settings = ui_settings(write_config(tmp_path / "config"), tmp_path / "ui-data", peer.pub_addr, peer.rep_addr)
    try:
        with running_workspace(settings) as ws:
            peer.wait_subscribed()
            wait_until(lambda: "t-1" in ws.dialogue.ratings, 10, "the thumbs under the done task")
            assert "t-2" not in ws.dialogue.ratings, "a failed task has no answer to rate"
            bar = ws.dialogue.ratings["t-1"]
            assert bar.rating is None and bar.label.text == "Was this answer good?"
            wait_stable(lambda: tuple(bar.up_button.pos), 10, "the bar laid out")
            tap(bar.up_button)
            wait_until(lambda: bar.rating == "up", 10, "the rating from the reply")
            assert [(c["task_id"], c["rating"]) for c in peer.commands("rate_task")] == [("t-1", "up")]
            assert bar.label.text == "You rated this answer good" and not bar.down_button.disabled

            peer.set_reply("rate_task", {"ok": False, "code": "not_saved", "error": "disk full"})
            tap(bar.down_button)
            wait_until(lambda: any(isinstance(e, NoteEntry) and e.text == "Rating not taken: disk full"
                                   for e in ws.dialogue.body.children), 10, "the refusal in the log")
            assert bar.rating == "up" and not bar.sending, "the old rating stays"

            peer.publish("task_rated", {"seq": 1, "time": time.time(), "task_id": "t-1", "rating": "down",
                                        "judged": True, "golden": False, "change": "removed"})
            wait_until(lambda: bar.rating == "down", 10, "a rating made elsewhere")
            peer.publish("curated", {"seq": 2, "time": time.time(), "judged": 2, "golden": 1})
            wait_until(lambda: any(isinstance(e, NoteEntry) and "judged 2 dialogue(s); 1 became golden" in e.text
                                   for e in ws.dialogue.body.children), 10, "the pass in the log")

            peer.set_reply("get_state", {"ok": True, "seq": 9, "state": {**snapshot, "curator": {"ratings": {"t-1": "up"}}}})
            peer.publish("log", {"seq": 9, "time": time.time(), "level": "INFO", "logger": "t", "message": "gap"})
            wait_until(lambda: ws.snapshots == 2 and bar.rating == "up", 10, "the snapshot's rating")
    finally:
        peer.close()
