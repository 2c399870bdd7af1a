"""Status bar: backend connection, model provider, autonomy, living image and the latest log line."""

from __future__ import annotations

import time

from kivy.metrics import dp, sp
from kivy.uix.label import Label
from kivy.utils import escape_markup

from a4ps.ui import theme
from a4ps.ui.morphs import StatusDot
from a4ps.ui.widgets import FlatButton, Panel

LOG_COLOURS = {"WARNING": theme.WARN_HEX, "ERROR": theme.BAD_HEX, "CRITICAL": theme.BAD_HEX}


def _cell(**kwargs) -> Label:
    kwargs.setdefault("markup", True)
    kwargs.setdefault("font_size", sp(theme.FONT_SMALL + 1))
    kwargs.setdefault("color", theme.TEXT)
    kwargs.setdefault("halign", "left")
    kwargs.setdefault("valign", "middle")
    kwargs.setdefault("shorten", True)
    kwargs.setdefault("shorten_from", "right")
    label = Label(**kwargs)
    label.bind(size=lambda *_: setattr(label, "text_size", label.size))
    label.text_size = label.size
    return label


def _pair(key: str, value: str, colour: str | None = None) -> str:
    value = escape_markup(value)
    if colour:
        value = f"[color={colour}]{value}[/color]"
    return f"[color={theme.MUTED_HEX}]{escape_markup(key)}[/color]  {value}"


class StatusBar(Panel):
    """One line across the top of the window."""

    def __init__(self, backend_addr: str, on_toggle_autonomy=None, **kwargs):
        """`on_toggle_autonomy(state)`: the autonomy cell was tapped; `state` is the one asked for."""
        kwargs.setdefault("orientation", "horizontal")
        kwargs.setdefault("size_hint_y", None)
        kwargs.setdefault("height", dp(36))
        kwargs.setdefault("padding", (dp(12), dp(4)))
        kwargs.setdefault("spacing", dp(10))
        super().__init__(**kwargs)
        self.backend_addr = backend_addr
        self.connected: bool | None = None
        self.provider = ""
        self.autonomy = ""
        self.codex_version: int | None = None
        self._on_toggle_autonomy = on_toggle_autonomy
        title = _cell(text=f"[b]BAT OS[/b]  [color={theme.MUTED_HEX}]Entropic UI[/color]", size_hint_x=None,
                      width=dp(150), font_size=sp(theme.FONT_BODY + 1))
        self.dot = StatusDot(size=(dp(11), dp(11)), pos_hint={"center_y": 0.5})
        self.connection = _cell(size_hint_x=None, width=dp(330))
        self.provider_label = _cell(size_hint_x=None, width=dp(170))
        # the autonomy cell is a switch: a tap pauses running autonomy or resumes paused autonomy
        self.autonomy_label = FlatButton(markup=True, size_hint_x=None, width=dp(200), fill=theme.PANEL_RAISED,
                                         font_size=sp(theme.FONT_SMALL + 1), font_name="Roboto", halign="center",
                                         valign="middle")
        self.autonomy_label.bind(on_release=lambda *_: self.toggle_autonomy())
        self.codex_label = _cell(size_hint_x=None, width=dp(90))
        self.log_label = _cell(color=theme.MUTED, halign="right")
        for child in (title, self.dot, self.connection, self.provider_label, self.autonomy_label, self.codex_label,
                      self.log_label):
            self.add_widget(child)
        self.set_connected(None)
        self.set_provider("")
        self.set_autonomy({})
        self.set_codex_version(None)

    def set_connected(self, connected: bool | None) -> None:
        self.connected = connected
        if connected is None:
            self.dot.colour = theme.FAINT
            text = _pair("backend", f"connecting to {self.backend_addr} …")
        elif connected:
            self.dot.colour = theme.GOOD
            text = _pair("backend", "connected", theme.GOOD_HEX)
        else:
            self.dot.colour = theme.BAD
            text = _pair("backend", f"offline · retrying {self.backend_addr}", theme.BAD_HEX)
        self.connection.text = text

    def set_provider(self, provider: str) -> None:
        self.provider = provider
        self.provider_label.text = _pair("models", provider or "–")

    def set_autonomy(self, autonomy: dict) -> None:
        state = str(autonomy.get("state") or "–")
        self.autonomy = state
        colour = {"running": theme.GOOD_HEX, "paused": theme.WARN_HEX}.get(state)
        action = {"running": "  · pause", "paused": "  · resume"}.get(state, "")
        self.autonomy_label.text = _pair("autonomy", state, colour) + f"[color={theme.MUTED_HEX}]{action}[/color]"
        self.autonomy_label.disabled = not action

    def toggle_autonomy(self) -> None:
        """Ask for the other state: running -> paused, paused -> running (off stays off)."""
        wanted = {"running": "paused", "paused": "running"}.get(self.autonomy)
        if wanted and self._on_toggle_autonomy is not None:
            self._on_toggle_autonomy(wanted)

    def set_codex_version(self, version: object) -> None:
        self.codex_version = version if isinstance(version, int) and not isinstance(version, bool) else None
        self.codex_label.text = _pair("codex", f"v{self.codex_version}" if self.codex_version is not None else "–")

    def set_log(self, level: str, message: str, when: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(when)) if when else ""
        colour = LOG_COLOURS.get(level, theme.MUTED_HEX)
        self.log_label.text = f"[color={colour}]{escape_markup(f'{stamp}  {message}'.strip())}[/color]"
