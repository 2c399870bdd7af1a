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
    return {"topic": "codex_proposal", "seq": 99, "time": time.time(), "proposal_id": pid,
            "diff": "--- codex.toml\n+++ codex.toml\n@@ principle 2 @@\n-Be brief.\n+Be brief, but never curt.\n",
            "history": [f"Task {i}: BRICK and ROBIN disagreed about tone; dissonance 0.8{i % 10}. " * 3
                        for i in range(entries)],
            "consequences": "Answers get slightly longer; ROBIN's dissonance should drop.",
            "justification": "Persistent dissonance over curt answers."}


def test_approval_dialog_keeps_approve_disabled_until_the_history_is_read(workspace, tmp_path):
    workspace.handle_event("codex_proposal", proposal_event("p-1"))
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
            approval = {"cmd": "decide_proposal", "proposal_id": "p-7", "decision": "approve", "history_read": True}
            assert peer.commands("decide_proposal") == [approval, approval]

            unread = ws.open_approval(proposal_event("p-8"))
            wait_stable(lambda: tuple(unread.reject_button.pos), 10, "the second dialog opened")
            tap(unread.reject_button)
            wait_until(lambda: unread not in open_modals(), 10, "the rejected dialog to close")
            assert peer.commands("decide_proposal")[-1] == {
                "cmd": "decide_proposal", "proposal_id": "p-8", "decision": "reject", "history_read": False}
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
                         ("unknown_topic", {"anything": 1})]:
        workspace.handle_event(topic, event)
    workspace.handle_event("codex_proposal", {"diff": "x"})
    assert workspace.morph_canvas.protos == protos and workspace.morph_canvas.tools == tools
    assert set(protos) == {"ALFRED", "BRICK", "ROBIN"}
    assert workspace.plot.values.get("t") is None
    added = len(workspace.dialogue.body.children) - shown
    assert added == 1 and "Ignored a codex proposal" in workspace.dialogue.body.children[0].text
    assert not any(isinstance(e, MessageEntry) and e.body == "x" for e in workspace.dialogue.body.children)


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
