"""Fine-tune plot: the training loss per step of the current (or last) fine-tune job, with its state.

Why in the window: a job runs for minutes in another process; the person should see that it moves,
how far it is (step / total, eta) and whether the loss falls, and how it ended.
"""

from __future__ import annotations

from kivy.clock import Clock
from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Ellipse, Line, Rectangle
from kivy.metrics import dp, sp
from kivy.uix.widget import Widget

from a4ps.ui import theme


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class LossPlot(Widget):
    """A line of (step, loss) for one job; a new job id starts a new line."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.job_id: str | None = None
        self.persona = ""
        self.points: dict[int, float] = {}
        self.total: int | None = None
        self.eta_s: float | None = None
        self.state = ""
        self._redraw = Clock.create_trigger(self._draw)
        self.bind(pos=self._redraw, size=self._redraw)

    # --- data -----------------------------------------------------------------------------------
    def _select(self, job_id: object, persona: object) -> bool:
        if not isinstance(job_id, str) or not job_id:
            return False
        if job_id != self.job_id:
            self.job_id, self.points, self.total, self.eta_s, self.state = job_id, {}, None, None, "running"
        if isinstance(persona, str):
            self.persona = persona
        return True

    def record(self, event: dict) -> None:
        """A `finetune_progress` event: one step's loss (malformed ones change nothing)."""
        step, total, loss = _number(event.get("step")), _number(event.get("total")), _number(event.get("loss"))
        if step is None or not self._select(event.get("job_id"), event.get("persona")):
            return
        if loss is not None and step >= 1:
            self.points[int(step)] = loss
        self.total = int(total) if total else self.total
        self.eta_s = _number(event.get("eta_s"))
        self._redraw()

    def set_job(self, event: dict) -> None:
        """A `finetune_job` event, or the snapshot's running job: its state (running, done, failed, ...)."""
        if self._select(event.get("job_id"), event.get("persona")) and isinstance(event.get("state"), str):
            self.state = event["state"]
            if self.state != "running":
                self.eta_s = None
            self._redraw()

    def series(self) -> list[tuple[int, float]]:
        return sorted(self.points.items())

    def caption(self) -> str:
        if self.job_id is None:
            return "no fine-tune yet"
        done = max(self.points) if self.points else 0
        text = f"{self.persona} · {self.state} · step {done}/{self.total or '?'}"
        if self.eta_s is not None and self.state == "running":
            text += f" · eta {self.eta_s:.0f} s"
        return text

    # --- drawing --------------------------------------------------------------------------------
    def _text(self, text: str, x: float, y: float, colour=theme.MUTED, anchor: str = "left",
              size: float = theme.FONT_SMALL - 1) -> None:
        label = CoreLabel(text=text, font_size=sp(size))
        label.refresh()
        texture = label.texture
        Color(rgba=colour)
        x = x - texture.width if anchor == "right" else x - texture.width / 2 if anchor == "center" else x
        Rectangle(texture=texture, pos=(round(x), round(y - texture.height / 2)), size=texture.size)

    def _draw(self, *_):
        self.canvas.clear()
        if self.width < dp(80) or self.height < dp(60):
            return
        with self.canvas:
            self._text(self.caption(), self.x, self.top - dp(8))
            left, bottom = self.x + dp(34), self.y + dp(16)
            width, height = max(1.0, self.right - left - dp(6)), max(1.0, self.top - bottom - dp(24))
            Color(1, 1, 1, 0.18)
            Line(points=[left, bottom, left + width, bottom], width=1)
            items = self.series()
            if not items:
                self._text("loss appears here while a job trains", left + width / 2, bottom + height / 2,
                           colour=theme.FAINT, anchor="center")
                return
            low, high = min(v for _, v in items), max(v for _, v in items)
            span = (high - low) or 1.0
            last_step = max(self.total or 0, items[-1][0], 2)
            points = []
            for step, value in items:
                points += [left + width * (step - 1) / max(last_step - 1, 1), bottom + height * (value - low) / span]
            for value, y in ((high, bottom + height), (low, bottom)):
                self._text(f"{value:.2f}", left - dp(4), y, anchor="right", size=theme.FONT_SMALL - 2)
            Color(rgba=theme.ACCENT)
            if len(points) >= 4:
                Line(points=points, width=dp(1.4))
            r = dp(2.5)
            Ellipse(pos=(points[-2] - r, points[-1] - r), size=(2 * r, 2 * r))
