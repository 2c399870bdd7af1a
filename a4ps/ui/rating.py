"""Thumbs up / down under a finished task's answer: the user's word on it, sent as `rate_task`.

Why: the Curator's judge is calibrated against the person, not trusted blindly; a rating also
overrides it (up: the dialogue becomes a golden sample; down: never). One bar per done task; the
chosen thumb stays lit, from the reply, a `task_rated` event, or the snapshot's `curator.ratings`.
"""

from __future__ import annotations

from typing import Callable

from kivy.metrics import dp, sp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label

from a4ps.ui import theme
from a4ps.ui.widgets import FlatButton

UP, DOWN = "up", "down"


class RatingBar(BoxLayout):
    """'Was this answer good?' and two thumbs; `on_rate(task_id, rating)` sends the choice."""

    def __init__(self, task_id: str, on_rate: Callable[[str, str], None], **kwargs):
        kwargs.setdefault("orientation", "horizontal")
        kwargs.setdefault("size_hint_y", None)
        kwargs.setdefault("height", dp(30))
        kwargs.setdefault("spacing", dp(6))
        super().__init__(**kwargs)
        self.task_id, self._on_rate = task_id, on_rate
        self.rating: str | None = None
        self.sending = False
        self.label = Label(text="Was this answer good?", color=theme.MUTED, font_size=sp(theme.FONT_SMALL),
                           halign="right", valign="middle")
        self.label.bind(size=self.label.setter("text_size"))
        self.up_button = FlatButton(text="Thumbs up", size_hint_x=None, width=dp(104), font_size=sp(theme.FONT_SMALL))
        self.down_button = FlatButton(text="Thumbs down", size_hint_x=None, width=dp(116),
                                      font_size=sp(theme.FONT_SMALL))
        self.up_button.bind(on_release=lambda *_: self.rate(UP))
        self.down_button.bind(on_release=lambda *_: self.rate(DOWN))
        for child in (self.label, self.up_button, self.down_button):
            self.add_widget(child)
        self.show(None)

    def rate(self, rating: str) -> None:
        if self.sending or rating == self.rating:
            return
        self.sending = True
        self.up_button.disabled = self.down_button.disabled = True
        self._on_rate(self.task_id, rating)

    def show(self, rating: str | None) -> None:
        """The rating the backend holds (None: not rated)."""
        self.sending = False
        self.rating = rating if rating in (UP, DOWN) else None
        self.up_button.disabled = self.down_button.disabled = False
        self.up_button.fill = theme.GOOD if self.rating == UP else theme.PANEL_EDGE
        self.down_button.fill = theme.BAD if self.rating == DOWN else theme.PANEL_EDGE
        self.label.text = {UP: "You rated this answer good", DOWN: "You rated this answer bad"}.get(
            self.rating, "Was this answer good?")

    def refused(self) -> None:
        """The backend did not take the rating: the old one stays."""
        self.show(self.rating)
