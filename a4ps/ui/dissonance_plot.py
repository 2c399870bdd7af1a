"""Dissonance plot: ROBIN's score per turn of the current task and per finished task over time."""

from __future__ import annotations

from kivy.clock import Clock
from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Ellipse, Line, Rectangle
from kivy.metrics import dp, sp
from kivy.properties import NumericProperty
from kivy.uix.widget import Widget

from a4ps.ui import theme

# Tasks shown in the history panel (the most recent ones).
HISTORY_SPAN = 30


def level_rgba(value: float) -> tuple[float, float, float, float]:
    """Green for harmony, red for contradiction."""
    v = min(1.0, max(0.0, value))
    return (0.3 + 0.64 * v, 0.76 - 0.39 * v, 0.54 - 0.14 * v, 1)


class DissonancePlot(Widget):
    """Two panels drawn with Kivy graphics: bars per turn (current task) and a line per task."""

    threshold = NumericProperty(0.4)

    def __init__(self, threshold: float = 0.4, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold
        self.values: dict[str, dict[int, float]] = {}
        self.order: list[str] = []
        self.current_task: str | None = None
        self._redraw = Clock.create_trigger(self._draw)
        self.bind(pos=self._redraw, size=self._redraw, threshold=self._redraw)

    # --- data -----------------------------------------------------------------------------------
    def record(self, task_id: str, turn: int, value: float) -> None:
        """One scored turn (`dissonance` event); that task becomes the current one."""
        self._series(task_id)[int(turn)] = float(value)
        self.current_task = task_id
        self._redraw()

    def record_task(self, task_id: str, values: list) -> None:
        """A task map's `dissonance` list (turns 1..n) from a snapshot or a `task` event."""
        numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers:
            series = self._series(task_id)
            for turn, value in enumerate(numbers, 1):
                series[turn] = value
            self._redraw()

    def set_current(self, task_id: str | None) -> None:
        if task_id != self.current_task:
            self.current_task = task_id
            self._redraw()

    def _series(self, task_id: str) -> dict[int, float]:
        if task_id not in self.values:
            self.values[task_id] = {}
            self.order.append(task_id)
        return self.values[task_id]

    def current_turns(self) -> list[tuple[int, float]]:
        return sorted(self.values.get(self.current_task or "", {}).items())

    def history(self) -> list[tuple[str, float]]:
        """(task_id, dissonance of its last scored turn), oldest first."""
        out = []
        for task_id in self.order:
            series = self.values[task_id]
            if series:
                out.append((task_id, series[max(series)]))
        return out

    # --- drawing --------------------------------------------------------------------------------
    def _text(self, text: str, x: float, y: float, *, size: float = theme.FONT_SMALL, colour=theme.MUTED,
              anchor: str = "left") -> None:
        label = CoreLabel(text=text, font_size=sp(size))
        label.refresh()
        texture = label.texture
        Color(rgba=colour)
        if anchor == "center":
            x -= texture.width / 2
        elif anchor == "right":
            x -= texture.width
        Rectangle(texture=texture, pos=(round(x), round(y - texture.height / 2)), size=texture.size)

    def _frame(self, x: float, y: float, w: float, h: float, title: str) -> tuple[float, float, float, float]:
        """Draw a panel's title, axis and threshold; return its plot area."""
        self._text(title, x, y + h - dp(8), colour=theme.MUTED)
        left, bottom = x + dp(30), y + dp(18)
        width, height = max(1.0, w - dp(36)), max(1.0, h - dp(40))
        for level in (0.0, 0.5, 1.0):
            yy = bottom + level * height
            Color(1, 1, 1, 0.06 if level else 0.18)
            Line(points=[left, yy, left + width, yy], width=1)
            self._text(f"{level:.1f}", left - dp(6), yy, anchor="right", size=theme.FONT_SMALL - 2)
        Color(rgba=theme.hex_rgba(theme.WARN_HEX, 0.8))
        ty = bottom + self.threshold * height
        Line(points=[left, ty, left + width, ty], width=1, dash_length=5, dash_offset=4)
        self._text(f"threshold {self.threshold:.2f}", left + width, ty + dp(8), anchor="right",
                   size=theme.FONT_SMALL - 2, colour=theme.hex_rgba(theme.WARN_HEX, 0.9))
        return left, bottom, width, height

    def _draw(self, *_):
        self.canvas.clear()
        if self.width < dp(120) or self.height < dp(80):
            return
        gap = dp(16)
        left_w = (self.width - gap) * 0.45
        with self.canvas:
            self._draw_turns(self.x, self.y, left_w, self.height)
            self._draw_history(self.x + left_w + gap, self.y, self.width - left_w - gap, self.height)

    def _draw_turns(self, x: float, y: float, w: float, h: float) -> None:
        title = "current task · per turn"
        if self.current_task:
            title += f"  ({self.current_task[:8]})"
        left, bottom, width, height = self._frame(x, y, w, h, title)
        turns = self.current_turns()
        if not turns:
            self._text("no turn scored yet", left + width / 2, bottom + height * 0.75, anchor="center",
                       colour=theme.FAINT)
            return
        slot = width / max(len(turns), 4)
        bar = min(dp(34), slot * 0.6)
        for i, (turn, value) in enumerate(turns):
            cx = left + slot * (i + 0.5)
            Color(rgba=level_rgba(value))
            Rectangle(pos=(cx - bar / 2, bottom), size=(bar, max(dp(2), value * height)))
            self._text(f"{value:.2f}", cx, bottom + value * height + dp(8), anchor="center", colour=theme.TEXT,
                       size=theme.FONT_SMALL - 1)
            self._text(f"t{turn}", cx, bottom - dp(9), anchor="center", size=theme.FONT_SMALL - 2)

    def _draw_history(self, x: float, y: float, w: float, h: float) -> None:
        left, bottom, width, height = self._frame(x, y, w, h, "per task over time (last turn)")
        items = self.history()[-HISTORY_SPAN:]
        if not items:
            self._text("no scored task yet", left + width / 2, bottom + height * 0.75, anchor="center",
                       colour=theme.FAINT)
            return
        step = width / max(len(items) - 1, 1) if len(items) > 1 else 0
        points = []
        for i, (_task, value) in enumerate(items):
            px = left + (step * i if len(items) > 1 else width / 2)
            points += [px, bottom + value * height]
        Color(rgba=theme.ACCENT)
        if len(points) >= 4:
            Line(points=points, width=dp(1.5))
        r = dp(3.5)
        for i in range(0, len(points), 2):
            value = (points[i + 1] - bottom) / height
            Color(rgba=level_rgba(value))
            Ellipse(pos=(points[i] - r, points[i + 1] - r), size=(2 * r, 2 * r))
        self._text(f"{len(items)} task{'s' if len(items) != 1 else ''}", left + width, bottom - dp(9),
                   anchor="right", size=theme.FONT_SMALL - 2)
