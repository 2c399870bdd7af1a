"""Small themed building blocks: panels, flat buttons, wrapping labels, text inputs."""

from __future__ import annotations

from kivy.graphics import Color, Line, RoundedRectangle
from kivy.metrics import dp, sp
from kivy.properties import ColorProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget
from kivy.utils import escape_markup

from a4ps.ui import theme

# Lines per Label when showing long text, so no texture grows past the GL size limit.
LINES_PER_LABEL = 120


class Panel(BoxLayout):
    """A rounded, filled box with an optional small title above its content."""

    fill = ColorProperty(theme.PANEL)
    edge = ColorProperty(theme.PANEL_EDGE)

    def __init__(self, title: str = "", **kwargs):
        kwargs.setdefault("orientation", "vertical")
        kwargs.setdefault("padding", (dp(10), dp(8), dp(10), dp(10)))
        kwargs.setdefault("spacing", dp(6))
        super().__init__(**kwargs)
        with self.canvas.before:
            self._fill_colour = Color(rgba=self.fill)
            self._fill_rect = RoundedRectangle(radius=[dp(8)])
            self._edge_colour = Color(rgba=self.edge)
            self._edge_line = Line(width=1)
        self.bind(pos=self._redraw, size=self._redraw, fill=self._recolour, edge=self._recolour)
        if title:
            self.add_widget(SectionTitle(text=title))

    def _recolour(self, *_):
        self._fill_colour.rgba = self.fill
        self._edge_colour.rgba = self.edge

    def _redraw(self, *_):
        self._fill_rect.pos, self._fill_rect.size = self.pos, self.size
        self._edge_line.rounded_rectangle = (self.x, self.y, self.width, self.height, dp(8))


class SectionTitle(Label):
    """Small upper-case heading of a panel."""

    def __init__(self, **kwargs):
        kwargs["text"] = kwargs.get("text", "").upper()
        kwargs.setdefault("font_size", sp(theme.FONT_SMALL))
        kwargs.setdefault("font_name", theme.BOLD_FONT)
        kwargs.setdefault("color", theme.MUTED)
        kwargs.setdefault("size_hint_y", None)
        kwargs.setdefault("height", dp(20))
        kwargs.setdefault("halign", "left")
        kwargs.setdefault("valign", "middle")
        super().__init__(**kwargs)
        self.bind(size=lambda *_: setattr(self, "text_size", self.size))


class FlatButton(ButtonBehavior, Label):
    """A flat rounded button; dimmed while disabled, lighter while pressed."""

    fill = ColorProperty(theme.ACCENT)

    def __init__(self, **kwargs):
        kwargs.setdefault("font_size", sp(theme.FONT_BODY))
        kwargs.setdefault("font_name", theme.BOLD_FONT)
        kwargs.setdefault("color", theme.TEXT)
        kwargs.setdefault("disabled_color", theme.FAINT)
        super().__init__(**kwargs)
        with self.canvas.before:
            self._colour = Color(rgba=self.fill)
            self._rect = RoundedRectangle(radius=[dp(6)])
        self.bind(pos=self._redraw, size=self._redraw, state=self._recolour, disabled=self._recolour,
                  fill=self._recolour)
        self._recolour()

    def _recolour(self, *_):
        r, g, b, _a = self.fill
        if self.disabled:
            self._colour.rgba = (r * 0.35 + 0.08, g * 0.35 + 0.08, b * 0.35 + 0.09, 1)
        elif self.state == "down":
            self._colour.rgba = (min(1, r + 0.15), min(1, g + 0.15), min(1, b + 0.15), 1)
        else:
            self._colour.rgba = (r, g, b, 1)

    def _redraw(self, *_):
        self._rect.pos, self._rect.size = self.pos, self.size


class WrappedLabel(Label):
    """A left-aligned label that wraps to its width and takes the height its text needs."""

    def __init__(self, **kwargs):
        kwargs.setdefault("size_hint_y", None)
        kwargs.setdefault("halign", "left")
        kwargs.setdefault("valign", "top")
        kwargs.setdefault("color", theme.TEXT)
        kwargs.setdefault("font_size", sp(theme.FONT_BODY))
        super().__init__(**kwargs)
        self.bind(width=self._wrap, texture_size=self._fit)
        self._wrap()
        self._fit()

    def _wrap(self, *_):
        pad_l, _t, pad_r, _b = self.padding
        self.text_size = (max(1, self.width - pad_l - pad_r), None)

    def _fit(self, *_):
        self.height = self.texture_size[1]


def spacer(**kwargs) -> Widget:
    """An empty widget that takes the remaining room in a box."""
    return Widget(**kwargs)


def text_input(**kwargs) -> TextInput:
    """A TextInput in the dark theme."""
    kwargs.setdefault("background_normal", "")
    kwargs.setdefault("background_active", "")
    kwargs.setdefault("background_color", theme.INPUT)
    kwargs.setdefault("foreground_color", theme.TEXT)
    kwargs.setdefault("hint_text_color", theme.FAINT)
    kwargs.setdefault("cursor_color", theme.ACCENT)
    kwargs.setdefault("font_size", sp(theme.FONT_BODY))
    kwargs.setdefault("padding", (dp(10), dp(9)))
    kwargs.setdefault("write_tab", False)
    return TextInput(**kwargs)


def text_blocks(text: str, *, mono: bool = False, colour_line=None, **kwargs) -> list[WrappedLabel]:
    """Long text as a list of wrapped labels of at most LINES_PER_LABEL lines each.

    colour_line(line) -> hex colour or None colours whole lines (used for diffs).
    """
    lines = text.split("\n") if text else [""]
    blocks = []
    for start in range(0, len(lines), LINES_PER_LABEL):
        chunk = lines[start:start + LINES_PER_LABEL]
        if colour_line is None:
            body, markup = "\n".join(chunk), False
        else:
            body, markup = "\n".join(_coloured(line, colour_line(line)) for line in chunk), True
        if mono:
            kwargs.setdefault("font_name", theme.MONO_FONT)
            kwargs.setdefault("font_size", sp(theme.FONT_SMALL + 1))
        blocks.append(WrappedLabel(text=body, markup=markup, **kwargs))
    return blocks


def _coloured(line: str, colour: str | None) -> str:
    escaped = escape_markup(line)
    return f"[color={colour}]{escaped}[/color]" if colour else escaped


class KeyValueLabel(WrappedLabel):
    """'key  value' rows in one label (markup), for read-only details."""

    def set_rows(self, rows: list[tuple[str, str]]) -> None:
        self.markup = True
        self.text = "\n".join(f"[color={theme.MUTED_HEX}]{escape_markup(k)}[/color]   {escape_markup(v)}"
                              for k, v in rows)
