"""The window's root widget, which routes backend events to the parts, and the Kivy App around it."""

from __future__ import annotations

from pathlib import Path

from kivy.app import App
from kivy.core.window import Window
from kivy.graphics import Color, Rectangle
from kivy.metrics import dp
from kivy.uix.boxlayout import BoxLayout

from a4ps.client import control_token_path
from a4ps.config import Settings
from a4ps.ui import theme
from a4ps.ui.approval_dialog import ApprovalDialog, parse_proposal
from a4ps.ui.connection import BackendBridge
from a4ps.ui.dialogue_log import DialogueLog
from a4ps.ui.dissonance_plot import DissonancePlot
from a4ps.ui.inspector import ProtoInspector, ToolInspector
from a4ps.ui.loss_plot import LossPlot
from a4ps.ui.morph_positions import MorphPositions
from a4ps.ui.morphs import MorphCanvas
from a4ps.ui.status_bar import StatusBar
from a4ps.ui.task_box import TaskBox
from a4ps.ui.widgets import Panel


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Workspace(BoxLayout):
    """Status bar, Morphic canvas, dissonance plot, dialogue log and task box, fed by the backend."""

    def __init__(self, settings: Settings, token_file: Path | None = None, **kwargs):
        """`token_file`: the backend's control token; by default control.token in settings.data_dir."""
        kwargs.setdefault("orientation", "vertical")
        kwargs.setdefault("padding", dp(10))
        kwargs.setdefault("spacing", dp(10))
        super().__init__(**kwargs)
        with self.canvas.before:
            Color(rgba=theme.BACKGROUND)
            self._bg = Rectangle()
        self.bind(pos=lambda *_: setattr(self._bg, "pos", self.pos),
                  size=lambda *_: setattr(self._bg, "size", self.size))
        self.settings = settings
        self.bridge = BackendBridge(settings.zmq.pub_addr, settings.zmq.rep_addr, self.handle_event,
                                    self._on_connection,
                                    token_file=token_file or control_token_path(settings.data_dir))
        self.tasks: dict[str, dict] = {}
        self.inspectors: dict[str, ProtoInspector] = {}
        self.approvals: dict[object, ApprovalDialog] = {}
        self.snapshots = 0

        self.status_bar = StatusBar(settings.zmq.rep_addr, on_toggle_autonomy=self.set_autonomy)
        self._fetching_proposal = False
        self.morph_canvas = MorphCanvas(MorphPositions.in_data_dir(settings.data_dir),
                                        on_proto_context=self.open_inspector, on_tool_tap=self.open_tool)
        self.plot = DissonancePlot(threshold=settings.graph.convergence_threshold)
        self.loss_plot = LossPlot()
        self.dialogue = DialogueLog(on_rate=self.rate_task)
        self.task_box = TaskBox(on_submit=self.submit_task, on_stop=self.stop_task)

        left = BoxLayout(orientation="vertical", spacing=dp(10), size_hint_x=0.54)
        canvas_panel = Panel(title="Morphic canvas   ·   drag to arrange   ·   right-click or hold to inspect")
        canvas_panel.add_widget(self.morph_canvas)
        plot_panel = Panel(title="Dissonance", size_hint_x=0.68)
        plot_panel.add_widget(self.plot)
        loss_panel = Panel(title="Fine-tune loss", size_hint_x=0.32)
        loss_panel.add_widget(self.loss_plot)
        plots = BoxLayout(spacing=dp(10), size_hint_y=None, height=dp(210))
        plots.add_widget(plot_panel)
        plots.add_widget(loss_panel)
        left.add_widget(canvas_panel)
        left.add_widget(plots)
        right = Panel(title="Dialogue", size_hint_x=0.46)
        right.add_widget(self.dialogue)
        body = BoxLayout(spacing=dp(10))
        body.add_widget(left)
        body.add_widget(right)
        self.add_widget(self.status_bar)
        self.add_widget(body)
        self.add_widget(self.task_box)

        self._handlers = {
            "state": self._on_state,
            "task": self._on_task,
            "token": self._on_token,
            "utterance": self._on_utterance,
            "proto": lambda event: self._show_proto(event.get("proto")),
            "dissonance": self._on_dissonance,
            "high_cognitive_dissonance": self._on_high_dissonance,
            "tool_request": self._on_tool_request,
            "tool_created": self._on_tool_created,
            "log": self._on_log,
            "codex_proposal": lambda event: self.fetch_proposal(),
            "proposal_decided": self._on_proposal_decided,
            "codex_changed": self._on_codex_changed,
            "autonomy": self.status_bar.set_autonomy,
            "goal": self._on_goal,
            "task_rated": self._on_task_rated,
            "curated": self._on_curated,
            "finetune_progress": self.loss_plot.record,
            "finetune_job": self._on_finetune_job,
        }

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.bridge.start()

    def stop(self) -> None:
        self.bridge.stop()

    # --- events ---------------------------------------------------------------------------------
    def handle_event(self, topic: str, event: dict) -> None:
        """Route one backend event (topic, msgpack map) to the part that shows it."""
        handler = self._handlers.get(topic)
        if handler is not None:
            handler(event)

    def _on_state(self, event: dict) -> None:
        snapshot = event.get("snapshot")
        if not isinstance(snapshot, dict):
            return
        self.snapshots += 1
        self.status_bar.set_provider(str(snapshot.get("provider") or ""))
        autonomy = snapshot.get("autonomy")
        self.status_bar.set_autonomy(autonomy if isinstance(autonomy, dict) else {})
        self.status_bar.set_codex_version(snapshot.get("codex_version"))
        pending = snapshot.get("proposal")
        if isinstance(pending, dict) and pending.get("proposal_id") not in self.approvals:
            self.fetch_proposal()  # a proposal still awaits a decision (after a reconnect, a restart)
        for proto in snapshot.get("protos") or []:
            self._show_proto(proto)
        for tool in snapshot.get("tools") or []:
            self._show_tool(tool)
        tasks = [t for t in snapshot.get("tasks") or [] if isinstance(t, dict) and isinstance(t.get("task_id"), str)]
        for task in sorted(tasks, key=lambda t: t.get("created_at") if _is_number(t.get("created_at")) else 0):
            self._show_task(task)
        curator = snapshot.get("curator")
        ratings = curator.get("ratings") if isinstance(curator, dict) else None
        for task_id, rating in (ratings.items() if isinstance(ratings, dict) else ()):
            if isinstance(task_id, str) and rating in ("up", "down"):
                self.dialogue.set_rating(task_id, rating)
        current = snapshot.get("current_task")
        if isinstance(current, str):
            self.plot.set_current(current)
        finetune = snapshot.get("finetune")
        running = finetune.get("running") if isinstance(finetune, dict) else None
        if isinstance(running, dict):
            self.loss_plot.set_job(running)
            if isinstance(running.get("progress"), dict):
                self.loss_plot.record({**running["progress"], "job_id": running.get("job_id"),
                                       "persona": running.get("persona")})
        self._refresh_stop()

    def _on_task(self, event: dict) -> None:
        if isinstance(event.get("task_id"), str):
            self._show_task(event)
            self._refresh_stop()

    def _on_token(self, event: dict) -> None:
        if isinstance(event.get("task_id"), str) and isinstance(event.get("text"), str):
            self.dialogue.add_token(event)

    def _on_utterance(self, event: dict) -> None:
        if isinstance(event.get("task_id"), str):
            self.dialogue.add_utterance(event)

    def _show_task(self, task: dict) -> None:
        task_id = task["task_id"]
        known = self.tasks.setdefault(task_id, {})
        known.update({k: v for k, v in task.items() if k not in ("topic", "seq", "time")})
        self.dialogue.show_task(known)
        self.plot.record_task(task_id, known.get("dissonance") or [])
        if known.get("status") == "running":
            self.plot.set_current(task_id)

    def _show_proto(self, proto: object) -> None:
        if not isinstance(proto, dict) or not isinstance(proto.get("name"), str) or not proto["name"]:
            return
        self.morph_canvas.upsert_proto(proto)
        inspector = self.inspectors.get(proto["name"])
        if inspector is not None:
            inspector.show_live(proto)

    def _show_tool(self, tool: object) -> bool:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            return False
        self.morph_canvas.upsert_tool(tool)
        return True

    def _on_dissonance(self, event: dict) -> None:
        task_id, turn, value = event.get("task_id"), event.get("turn"), event.get("value")
        if isinstance(task_id, str) and isinstance(turn, int) and _is_number(value):
            self.plot.record(task_id, turn, float(value))

    def _on_high_dissonance(self, event: dict) -> None:
        values = ", ".join(f"{v:.2f}" for v in event.get("values") or [] if _is_number(v))
        self.dialogue.add_note(f"High cognitive dissonance on every turn ({values}); "
                               f"threshold {event.get('threshold')}.", theme.WARN_HEX)

    def _on_tool_request(self, event: dict) -> None:
        spec = str(event.get("spec") or "").strip()
        self.dialogue.add_note(f"BRICK asks for a tool: {spec[:300]}", theme.TOOL_HEX)

    def _on_tool_created(self, event: dict) -> None:
        tool = event.get("tool")
        if self._show_tool(tool):
            self.dialogue.add_note(f"New tool: {tool.get('signature') or tool['name']}", theme.TOOL_HEX)

    def _on_goal(self, event: dict) -> None:
        goal, why = event.get("goal"), str(event.get("why") or "").strip()
        if isinstance(goal, str) and goal.strip():
            goal = goal.strip()
            trigger = str(event.get("trigger") or "idle")
            what = "reflection on the codex" if event.get("kind") == "reflect" else "goal"
            note = f"Self-set {what} ({trigger}): {goal[:300]}" + (f" — why: {why[:300]}" if why else "")
            self.dialogue.add_note(note, theme.WARN_HEX)

    def _on_codex_changed(self, event: dict) -> None:
        if not isinstance(event.get("version"), int):
            return
        self.status_bar.set_codex_version(event.get("version"))
        self.dialogue.add_note(f"Codex version {event.get('version')} ({event.get('by')}): "
                               f"{str(event.get('why') or '')[:300]}", theme.GOOD_HEX)

    def _on_proposal_decided(self, event: dict) -> None:
        """Decided elsewhere (the CLI, another window): close the dialog that still shows it."""
        proposal_id = event.get("proposal_id")
        dialog = self.approvals.get(proposal_id) if isinstance(proposal_id, (str, int)) else None
        if dialog is not None and not dialog.sending:
            dialog.dismiss()
            self.dialogue.add_note(f"Codex amendment {event.get('decision')}d elsewhere.", theme.MUTED_HEX)

    def _on_task_rated(self, event: dict) -> None:
        if isinstance(event.get("task_id"), str) and event.get("rating") in ("up", "down"):
            self.dialogue.set_rating(event["task_id"], event["rating"])

    def _on_curated(self, event: dict) -> None:
        judged, golden = event.get("judged"), event.get("golden")
        if isinstance(judged, int) and isinstance(golden, int) and judged:
            self.dialogue.add_note(f"Curator: ALFRED judged {judged} dialogue(s); {golden} became golden samples.",
                                   theme.MUTED_HEX)

    def _on_finetune_job(self, event: dict) -> None:
        self.loss_plot.set_job(event)
        state, persona = event.get("state"), event.get("persona")
        if state in ("done", "failed", "cancelled", "interrupted") and isinstance(persona, str):
            report = event.get("report") if isinstance(event.get("report"), dict) else {}
            detail = f": {report.get('adapter_gguf')}" if state == "done" else f" ({event.get('error')})"
            self.dialogue.add_note(f"Fine-tune of {persona} {state}{detail}", theme.MUTED_HEX)

    def rate_task(self, task_id: str, rating: str) -> None:
        """A thumb under a done task: the user's word on its answer (the Curator's override)."""
        self.bridge.request("rate_task", lambda reply: self._rated(task_id, reply), task_id=task_id, rating=rating)

    def _rated(self, task_id: str, reply: dict) -> None:
        if reply.get("ok") and reply.get("rating") in ("up", "down"):
            self.dialogue.set_rating(task_id, reply["rating"])
            return
        bar = self.dialogue.ratings.get(task_id)
        if bar is not None:
            bar.refused()
        self.dialogue.add_note(f"Rating not taken: {reply.get('error', 'unknown error')}", theme.BAD_HEX)

    def set_autonomy(self, state: str) -> None:
        """The status bar's switch: pause or resume the society's self-set goals."""
        self.bridge.request("set_autonomy", self._autonomy_set, state=state)

    def _autonomy_set(self, reply: dict) -> None:
        if reply.get("ok") and isinstance(reply.get("autonomy"), dict):
            self.status_bar.set_autonomy(reply["autonomy"])
        else:
            self.dialogue.add_note(f"Autonomy not changed: {reply.get('error', 'unknown error')}", theme.BAD_HEX)

    def _on_log(self, event: dict) -> None:
        level = str(event.get("level") or "INFO")
        message = str(event.get("message") or "")
        when = event.get("time") if _is_number(event.get("time")) else None
        self.status_bar.set_log(level, message, when)
        if level in ("WARNING", "ERROR", "CRITICAL"):
            self.dialogue.add_note(f"{level.lower()}: {message}",
                                   theme.WARN_HEX if level == "WARNING" else theme.BAD_HEX)

    def _on_connection(self, connected: bool, reply: dict) -> None:
        self.status_bar.set_connected(connected)
        if connected and isinstance(reply.get("provider"), str):
            self.status_bar.set_provider(reply["provider"])

    # --- tasks ----------------------------------------------------------------------------------
    def submit_task(self, text: str) -> None:
        self.bridge.request("submit_task", lambda reply: self._submitted(text, reply), text=text)

    def _submitted(self, text: str, reply: dict) -> None:
        self.task_box.submitted(reply)
        if reply.get("ok") and isinstance(reply.get("task_id"), str):
            if reply["task_id"] not in self.tasks:
                self._show_task({"task_id": reply["task_id"], "text": text, "status": "queued", "source": "user"})
            self._refresh_stop()
        else:
            self.dialogue.add_note(f"Task not sent: {reply.get('error', 'unknown error')}", theme.BAD_HEX)

    def stop_target(self) -> str | None:
        """The running task, else the newest queued one."""
        running = [i for i, t in self.tasks.items() if t.get("status") == "running"]
        if running:
            return running[-1]
        queued = [i for i, t in self.tasks.items() if t.get("status") == "queued"]
        return queued[-1] if queued else None

    def _refresh_stop(self) -> None:
        self.task_box.set_stoppable(self.stop_target() is not None)

    def stop_task(self) -> None:
        task_id = self.stop_target()
        if task_id is not None:
            self.bridge.request("cancel_task", lambda reply: self._stopped(task_id, reply), task_id=task_id)

    def _stopped(self, task_id: str, reply: dict) -> None:
        if not reply.get("ok"):
            self.dialogue.add_note(f"Could not stop task {task_id[:8]}: {reply.get('error')}", theme.BAD_HEX)

    # --- inspectors and dialogs -------------------------------------------------------------------
    def open_inspector(self, name: str) -> ProtoInspector | None:
        """Right-click / long-press on a ProtoMorph: the Inspector of that proto."""
        morph = self.morph_canvas.protos.get(name)
        if morph is None:
            return None
        inspector = self.inspectors.get(name)
        if inspector is None:
            inspector = ProtoInspector(morph.proto, on_apply=self.apply_proto)
            inspector.bind(on_dismiss=lambda *_: self._forget(self.inspectors, name))
            self.inspectors[name] = inspector
            inspector.open()
        return inspector

    @staticmethod
    def _forget(views: dict, key: object) -> None:
        """on_dismiss handler; it must return None (a true value would cancel the dismissal)."""
        views.pop(key, None)

    def apply_proto(self, name: str, changes: dict) -> None:
        self.bridge.request("update_proto", lambda reply: self._proto_applied(name, reply), name=name,
                            changes=changes)

    def _proto_applied(self, name: str, reply: dict) -> None:
        if reply.get("ok"):
            self._show_proto(reply.get("proto"))
        inspector = self.inspectors.get(name)
        if inspector is not None:
            inspector.apply_result(reply)

    def open_tool(self, name: str) -> ToolInspector | None:
        """Tap on a ToolMorph: its spec and source."""
        morph = self.morph_canvas.tools.get(name)
        if morph is None:
            return None
        view = ToolInspector(morph.tool)
        view.open()
        return view

    def fetch_proposal(self) -> None:
        """Fetch the pending proposal, its whole history included, and open the ApprovalDialog on it."""
        if not self._fetching_proposal:
            self._fetching_proposal = True
            self.bridge.request("get_proposal", self._on_proposal_reply)

    def _on_proposal_reply(self, reply: dict) -> None:
        self._fetching_proposal = False
        if not reply.get("ok"):
            self.dialogue.add_note(f"The codex proposal could not be fetched: {reply.get('error')}", theme.BAD_HEX)
        elif isinstance(reply.get("proposal"), dict):
            self.open_approval(reply["proposal"])

    def open_approval(self, event: dict) -> ApprovalDialog | None:
        """Open the ApprovalDialog on a proposal map (as `get_proposal` returns it), once per proposal."""
        try:
            proposal = parse_proposal(event)
        except ValueError as exc:
            self.dialogue.add_note(f"Ignored a codex proposal: {exc}", theme.BAD_HEX)
            return None
        pid = proposal["proposal_id"]
        if pid in self.approvals:
            return self.approvals[pid]
        dialog = ApprovalDialog(proposal, on_decide=self.decide_proposal)
        dialog.bind(on_dismiss=lambda *_: self._forget(self.approvals, pid))
        self.approvals[pid] = dialog
        dialog.open()
        self.dialogue.add_note("ALFRED proposes a codex amendment; autonomous work waits for your decision.",
                               theme.WARN_HEX)
        return dialog

    def decide_proposal(self, proposal_id: object, decision: str) -> None:
        dialog = self.approvals.get(proposal_id)
        proof = {}
        if decision == "approve" and dialog is not None and dialog.history_read:
            proof = {"history_digest": dialog.proposal["history_digest"]}  # the backend demands it
        self.bridge.request("decide_proposal", lambda reply: self._decided(proposal_id, decision, reply),
                            proposal_id=proposal_id, decision=decision, **proof)

    def _decided(self, proposal_id: object, decision: str, reply: dict) -> None:
        dialog = self.approvals.get(proposal_id)
        if dialog is not None:
            dialog.decision_result(reply)
        if reply.get("ok"):
            approved = decision == "approve"
            self.dialogue.add_note(f"Codex amendment {'approved' if approved else 'rejected'}.",
                                   theme.GOOD_HEX if approved else theme.MUTED_HEX)


class EntropicApp(App):
    """The Kivy application: one Workspace connected to the backend named in the settings."""

    title = "BAT OS · Entropic UI"

    def __init__(self, settings: Settings, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.workspace: Workspace | None = None

    def build(self) -> Workspace:
        Window.clearcolor = theme.BACKGROUND
        self.workspace = Workspace(self.settings)
        return self.workspace

    def on_start(self) -> None:
        if self.workspace is not None:
            self.workspace.start()

    def on_stop(self) -> None:
        if self.workspace is not None:
            self.workspace.stop()
