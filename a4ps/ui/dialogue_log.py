"""The live dialogue: one header per task, then each persona's message streamed token by token."""

from __future__ import annotations

import time

from kivy.graphics import Color, Rectangle, RoundedRectangle
from kivy.metrics import dp, sp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.scrollview import ScrollView
from kivy.utils import escape_markup

from a4ps.ui import theme
from a4ps.ui.rating import RatingBar
from a4ps.ui.widgets import WrappedLabel

NODE_LABELS = {"alfred_plan": "plan", "brick": "thesis", "robin": "antithesis", "tool_forge": "tool forge",
               "alfred_check": "own working", "brick_compute": "program", "alfred_synthesize": "synthesis"}
FINISHED = {"done", "failed", "cancelled"}
SELF_SET = 1  # a task's priority when the society set it itself (docs/protocol.md)
# Oldest entries are dropped past this many, so a long session does not exhaust GPU memory.
MAX_ENTRIES = 800
STICK_TOLERANCE = 0.02


def _short_time(stamp: object) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp)) if isinstance(stamp, (int, float)) else ""


class _Entry(WrappedLabel):
    """A log row with a tinted background and a coloured bar on its left."""

    def __init__(self, bar_rgba, fill_rgba=theme.PANEL, **kwargs):
        kwargs.setdefault("markup", True)
        kwargs.setdefault("padding", (dp(14), dp(7), dp(10), dp(7)))
        super().__init__(**kwargs)
        with self.canvas.before:
            Color(rgba=fill_rgba)
            self._bg = RoundedRectangle(radius=[dp(5)])
            self._bar_colour = Color(rgba=bar_rgba)
            self._bar = Rectangle()
        self.bind(pos=self._redraw, size=self._redraw)

    def _redraw(self, *_):
        self._bg.pos, self._bg.size = self.pos, self.size
        self._bar.pos, self._bar.size = self.pos, (dp(3), self.height)


class MessageEntry(_Entry):
    """One persona's utterance; grows with each token until the utterance closes it."""

    def __init__(self, persona: str, node: str, turn: object):
        super().__init__(theme.persona_rgba(persona))
        self.persona, self.node, self.turn = persona, node, turn
        self.body = ""
        self.closed = False
        self.render()

    def append(self, text: str) -> None:
        self.body += text
        self.render()

    def close(self, text: str | None) -> None:
        if text is not None and text.strip():
            self.body = text
        self.closed = True
        self.render()

    def render(self) -> None:
        step = NODE_LABELS.get(self.node, self.node)
        where = f"{step} · turn {self.turn}" if self.node not in ("alfred_plan",) else step
        state = "" if self.closed else f"  [color={theme.WARN_HEX}]speaking…[/color]"
        head = (f"[b][color={theme.persona_hex(self.persona)}]{escape_markup(self.persona)}[/color][/b]"
                f"  [size={int(sp(theme.FONT_SMALL))}][color={theme.MUTED_HEX}]{escape_markup(where)}[/color]"
                f"{state}[/size]")
        self.text = f"{head}\n{escape_markup(self.body.strip()) or ' '}"


class TaskHeader(_Entry):
    """A task's title row: its text, who set it, when, and its status."""

    def __init__(self, task_id: str):
        super().__init__(theme.ACCENT, fill_rgba=theme.PANEL_RAISED, padding=(dp(14), dp(9), dp(10), dp(9)))
        self.task_id = task_id
        self.task: dict = {"task_id": task_id, "status": "queued"}
        self.render()

    def update(self, task: dict) -> None:
        self.task.update({k: v for k, v in task.items() if v is not None or k in ("result", "error")})
        self.render()

    @property
    def status(self) -> str:
        return str(self.task.get("status", ""))

    def render(self) -> None:
        task = self.task
        status = self.status
        colour = theme.task_status_hex(status)
        self._bar_colour.rgba = theme.hex_rgba(colour)
        meta = [f"task {self.task_id[:8]}", str(task.get("source") or "user"), _short_time(task.get("created_at"))]
        details = task.get("details") if isinstance(task.get("details"), dict) else {}
        self_set = task.get("priority") == SELF_SET
        turns = task.get("turns")
        if status in FINISHED and isinstance(turns, int) and turns:
            meta.append(f"{turns} turn{'s' if turns != 1 else ''}")
        text = str(task.get("text") or "(task text not received yet)")
        mark = f"[b][color={theme.WARN_HEX}]SELF-SET GOAL[/color][/b]   " if self_set else ""
        why = f"\n[color={theme.MUTED_HEX}]why: {escape_markup(str(details['why']))}[/color]" \
            if self_set and details.get("why") else ""
        self.text = (f"[size={int(sp(theme.FONT_SMALL))}]{mark}[color={theme.MUTED_HEX}]"
                     f"{escape_markup('  ·  '.join(m for m in meta if m))}[/color]   "
                     f"[b][color={colour}]{escape_markup(status.upper())}[/color][/b][/size]\n"
                     f"[b]{escape_markup(text)}[/b]{why}")


class NoteEntry(_Entry):
    """A system line: a result, an error, a tool, a log warning."""

    def __init__(self, text: str, colour_hex: str):
        super().__init__(theme.hex_rgba(colour_hex), fill_rgba=theme.BACKGROUND, color=theme.hex_rgba(colour_hex),
                         font_size=sp(theme.FONT_SMALL + 1), markup=False, text=text)


class DialogueLog(BoxLayout):
    """Scrolling log of every task of this session; follows the newest line unless scrolled up."""

    def __init__(self, on_rate=None, **kwargs):
        """`on_rate(task_id, rating)`: a thumb under a done task was pressed (no thumbs without it)."""
        kwargs.setdefault("orientation", "vertical")
        super().__init__(**kwargs)
        self._on_rate = on_rate
        self.ratings: dict[str, RatingBar] = {}
        self._known_ratings: dict[str, str] = {}
        self.scroll = ScrollView(do_scroll_x=False, always_overscroll=False, scroll_wheel_distance=dp(48),
                                 bar_width=dp(6), scroll_type=["bars", "content"], bar_color=(0.55, 0.6, 0.7, 0.8),
                                 bar_inactive_color=(0.55, 0.6, 0.7, 0.3))
        self.body = BoxLayout(orientation="vertical", size_hint_y=None, spacing=dp(6), padding=(0, 0, dp(10), 0))
        self.body.bind(minimum_height=self.body.setter("height"))
        self.scroll.add_widget(self.body)
        self.add_widget(self.scroll)
        self.headers: dict[str, TaskHeader] = {}
        self.messages: dict[tuple, MessageEntry] = {}
        self._synthesized: set[str] = set()
        self._stick = True
        self.scroll.bind(scroll_y=self._on_scroll)
        self.body.bind(height=self._follow)
        self.scroll.bind(height=self._follow)

    # --- scrolling ------------------------------------------------------------------------------
    def _on_scroll(self, *_):
        self._stick = self.scroll.scroll_y <= STICK_TOLERANCE or self.body.height <= self.scroll.height

    def _follow(self, *_):
        if self.body.height <= self.scroll.height:
            self.scroll.scroll_y = 1  # short content sits at the top
        elif self._stick:
            self.scroll.scroll_y = 0

    # --- content --------------------------------------------------------------------------------
    def _add(self, entry) -> None:
        self.body.add_widget(entry, index=0)  # index 0 = last in a vertical BoxLayout
        while len(self.body.children) > MAX_ENTRIES:
            self._forget(self.body.children[-1])

    def _forget(self, entry) -> None:
        self.body.remove_widget(entry)
        if isinstance(entry, TaskHeader):
            self.headers.pop(entry.task_id, None)
        elif isinstance(entry, RatingBar):
            self.ratings.pop(entry.task_id, None)
        elif isinstance(entry, MessageEntry):
            for key, message in list(self.messages.items()):
                if message is entry:
                    del self.messages[key]

    def show_task(self, task: dict) -> TaskHeader:
        """Create or update the header of a task from a task map (snapshot, event or reply)."""
        task_id = str(task["task_id"])
        header = self.headers.get(task_id)
        if header is None:
            header = TaskHeader(task_id)
            self.headers[task_id] = header
            self._add(header)
        before = header.status
        header.update(task)
        status = header.status
        if status != before and status in FINISHED:
            self._task_finished(header)
        return header

    def _task_finished(self, header: TaskHeader) -> None:
        task = header.task
        if header.status == "done" and header.task_id not in self._synthesized and task.get("result"):
            entry = self._message(header.task_id, "ALFRED", "alfred_synthesize", task.get("turns", 0))
            entry.close(str(task["result"]))
            self._synthesized.add(header.task_id)
        if header.status == "done" and self._on_rate is not None and header.task_id not in self.ratings:
            bar = RatingBar(header.task_id, self._on_rate)
            bar.show(self._known_ratings.get(header.task_id))
            self.ratings[header.task_id] = bar
            self._add(bar)
        elif header.status == "failed":
            self.add_note(f"Task failed: {task.get('error') or 'no reason given'}", theme.BAD_HEX)
        elif header.status == "cancelled":
            self.add_note(f"Task cancelled: {task.get('error') or 'by request'}", theme.MUTED_HEX)

    def _message(self, task_id: str, persona: str, node: str, turn: object) -> MessageEntry:
        key = (task_id, persona, node, turn)
        entry = self.messages.get(key)
        if entry is None:
            if task_id not in self.headers:
                self.show_task({"task_id": task_id, "status": "running"})
            entry = MessageEntry(persona, node, turn)
            self.messages[key] = entry
            self._add(entry)
        return entry

    def add_token(self, event: dict) -> None:
        """A streamed piece of an utterance (`token` event)."""
        entry = self._message(str(event["task_id"]), str(event.get("persona", "?")), str(event.get("node", "")),
                              event.get("turn"))
        if entry.closed:  # a late token after the close: start over rather than corrupt the text
            entry.closed = False
            entry.body = ""
        entry.append(str(event.get("text", "")))

    def add_utterance(self, event: dict) -> None:
        """A persona finished speaking (`utterance` event): its final text replaces the stream."""
        task_id, node = str(event["task_id"]), str(event.get("node", ""))
        entry = self._message(task_id, str(event.get("persona", "?")), node, event.get("turn"))
        entry.close(str(event.get("text", "")))
        if node == "alfred_synthesize":
            self._synthesized.add(task_id)

    def set_rating(self, task_id: str, rating: str | None) -> None:
        """The rating the backend holds for a task (its bar shows it now or once the task is done)."""
        if rating is None:
            self._known_ratings.pop(task_id, None)
        else:
            self._known_ratings[task_id] = rating
        bar = self.ratings.get(task_id)
        if bar is not None:
            bar.show(rating)

    def add_note(self, text: str, colour_hex: str = theme.MUTED_HEX) -> NoteEntry:
        entry = NoteEntry(text, colour_hex)
        self._add(entry)
        return entry
