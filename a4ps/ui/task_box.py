"""The task box at the bottom: type a task, Enter or Send submits it, Stop cancels the active one."""

from __future__ import annotations

from typing import Callable

from kivy.metrics import dp, sp

from a4ps.ui import theme
from a4ps.ui.widgets import FlatButton, Panel, text_input


class TaskBox(Panel):
    """Input plus Send and Stop. The text is cleared only once the backend has queued the task."""

    def __init__(self, on_submit: Callable[[str], None], on_stop: Callable[[], None], **kwargs):
        kwargs.setdefault("orientation", "horizontal")
        kwargs.setdefault("size_hint_y", None)
        kwargs.setdefault("height", dp(58))
        kwargs.setdefault("padding", (dp(8), dp(8)))
        kwargs.setdefault("spacing", dp(8))
        super().__init__(**kwargs)
        self._on_submit = on_submit
        self._on_stop = on_stop
        self.input = text_input(multiline=False, hint_text="Give the society a task and press Enter …",
                                font_size=sp(theme.FONT_BODY + 1))
        self.input.text_validate_unfocus = False
        self.input.bind(on_text_validate=lambda *_: self.submit())
        self.send_button = FlatButton(text="Send", size_hint_x=None, width=dp(104))
        self.stop_button = FlatButton(text="Stop", fill=theme.BAD, size_hint_x=None, width=dp(96), disabled=True)
        self.send_button.bind(on_release=lambda *_: self.submit())
        self.stop_button.bind(on_release=lambda *_: self._on_stop())
        self.add_widget(self.input)
        self.add_widget(self.send_button)
        self.add_widget(self.stop_button)
        self._in_flight: str | None = None

    def submit(self) -> None:
        """Hand the typed text to on_submit (empty text and double submits are ignored)."""
        text = self.input.text.strip()
        if not text or self._in_flight is not None:
            return
        self._in_flight = text
        self.send_button.disabled = True
        self._on_submit(text)

    def submitted(self, reply: dict) -> None:
        """The backend's answer to submit_task: clear the box if the task was queued."""
        text, self._in_flight = self._in_flight, None
        self.send_button.disabled = False
        if reply.get("ok") and self.input.text.strip() == text:
            self.input.text = ""

    def set_stoppable(self, stoppable: bool) -> None:
        self.stop_button.disabled = not stoppable
