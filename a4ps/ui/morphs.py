"""The Morphic canvas: draggable ProtoMorphs (one per persona) and ToolMorphs (one per tool)."""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

from kivy.animation import Animation
from kivy.clock import Clock
from kivy.graphics import Color, Ellipse, Line, Mesh, RoundedRectangle
from kivy.metrics import dp, sp
from kivy.properties import ColorProperty, ListProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from a4ps.ui import theme
from a4ps.ui.morph_positions import MorphPositions

LONG_PRESS_S = 0.6
DRAG_SLOP_DP = 6
PROTO_ORDER = ("ALFRED", "BRICK", "ROBIN")
PROTO_HOME = {"ALFRED": (0.5, 0.93), "BRICK": (0.06, 0.5), "ROBIN": (0.94, 0.5)}


def touch_button(touch) -> str:
    """'left', 'right', 'scrollup', … for mouse touches; 'left' for fingers."""
    return touch.button if "button" in touch.profile and touch.button else "left"


class Morph(BoxLayout):
    """A draggable object: tap, drag, right-click or long-press (context), remembered position.

    Events: on_tap, on_context, on_drag_end.
    """

    key = StringProperty()
    frac = ListProperty([0.5, 0.5])
    accent = ColorProperty(theme.ACCENT)
    glow = NumericProperty(0.0)

    __events__ = ("on_tap", "on_context", "on_drag_end")

    def __init__(self, **kwargs):
        kwargs.setdefault("orientation", "vertical")
        kwargs.setdefault("size_hint", (None, None))
        kwargs.setdefault("padding", (dp(12), dp(8), dp(12), dp(8)))
        kwargs.setdefault("spacing", dp(2))
        super().__init__(**kwargs)
        with self.canvas.before:
            self._shadow_colour = Color(0, 0, 0, 0.35)
            self._shadow = RoundedRectangle(radius=[dp(10)])
            self._fill_colour = Color(rgba=theme.PANEL_RAISED)
            self._fill = RoundedRectangle(radius=[dp(10)])
            self._strip_colour = Color(rgba=self.accent)
            self._strip = RoundedRectangle(radius=[dp(10), 0, 0, dp(10)])
            self._edge_colour = Color(rgba=self.accent)
            self._edge = Line(width=dp(1.2))
        self.bind(pos=self._redraw, size=self._redraw, accent=self._recolour, glow=self._recolour)
        self._recolour()

    def _recolour(self, *_):
        r, g, b, _a = self.accent
        self._strip_colour.rgba = (r, g, b, 1)
        self._edge_colour.rgba = (r, g, b, 0.35 + 0.65 * self.glow)
        self._edge.width = dp(1.2) + dp(1.3) * self.glow

    def _redraw(self, *_):
        x, y = self.pos
        w, h = self.size
        self._shadow.pos, self._shadow.size = (x + dp(2), y - dp(3)), (w, h)
        self._fill.pos, self._fill.size = (x, y), (w, h)
        self._strip.pos, self._strip.size = (x, y), (dp(5), h)
        self._edge.rounded_rectangle = (x, y, w, h, dp(10))

    # --- touches ------------------------------------------------------------------------------
    def on_touch_down(self, touch):
        if not self.collide_point(*touch.pos) or touch.is_mouse_scrolling:
            return False
        if touch_button(touch) == "right":
            self.dispatch("on_context")
            return True
        touch.grab(self)
        press = {"start": touch.pos, "offset": (touch.x - self.x, touch.y - self.y), "moved": False, "long": False}
        press["timer"] = Clock.schedule_once(partial(self._long_press, press), LONG_PRESS_S)
        touch.ud[self._press_key] = press
        if self.parent is not None and hasattr(self.parent, "raise_morph"):
            self.parent.raise_morph(self)
        return True

    @property
    def _press_key(self) -> str:
        return f"morph-{self.uid}"

    def _long_press(self, press: dict, _dt: float) -> None:
        if not press["moved"]:
            press["long"] = True
            self.dispatch("on_context")

    def on_touch_move(self, touch):
        if touch.grab_current is not self:
            return False
        press = touch.ud[self._press_key]
        if not press["moved"]:
            if math.dist(touch.pos, press["start"]) < dp(DRAG_SLOP_DP) or press["long"]:
                return True
            press["moved"] = True
            press["timer"].cancel()
        ox, oy = press["offset"]
        if self.parent is not None and hasattr(self.parent, "drag_morph"):
            self.parent.drag_morph(self, touch.x - ox, touch.y - oy)
        return True

    def on_touch_up(self, touch):
        if touch.grab_current is not self:
            return False
        touch.ungrab(self)
        press = touch.ud.pop(self._press_key)
        press["timer"].cancel()
        if press["moved"]:
            self.dispatch("on_drag_end")
        elif not press["long"]:
            self.dispatch("on_tap")
        return True

    def on_tap(self):
        pass

    def on_context(self):
        pass

    def on_drag_end(self):
        pass


class StatusDot(Widget):
    """A small filled circle."""

    colour = ColorProperty(theme.FAINT)

    def __init__(self, **kwargs):
        kwargs.setdefault("size_hint", (None, None))
        kwargs.setdefault("size", (dp(10), dp(10)))
        super().__init__(**kwargs)
        with self.canvas:
            self._colour = Color(rgba=self.colour)
            self._dot = Ellipse()
        self.bind(pos=self._redraw, size=self._redraw, colour=lambda *_: setattr(self._colour, "rgba", self.colour))

    def _redraw(self, *_):
        d = min(self.width, self.height)
        self._dot.pos = (self.center_x - d / 2, self.center_y - d / 2)
        self._dot.size = (d, d)


class LevelBar(Widget):
    """A thin horizontal gauge for a value in 0..1, green (low) to red (high); empty for None."""

    value = NumericProperty(-1.0)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.canvas:
            Color(rgba=theme.PANEL_EDGE)
            self._track = RoundedRectangle(radius=[dp(2)])
            self._colour = Color(rgba=theme.GOOD)
            self._bar = RoundedRectangle(radius=[dp(2)])
        self.bind(pos=self._redraw, size=self._redraw, value=self._redraw)

    def _redraw(self, *_):
        self._track.pos, self._track.size = self.pos, self.size
        v = self.value
        if v < 0:
            self._bar.size = (0, 0)
            return
        v = min(1.0, v)
        self._colour.rgba = (0.3 + 0.64 * v, 0.76 - 0.39 * v, 0.54 - 0.14 * v, 1)
        self._bar.pos, self._bar.size = self.pos, (max(dp(3), self.width * v), self.height)


def _line_label(**kwargs) -> Label:
    kwargs.setdefault("size_hint_y", None)
    kwargs.setdefault("height", dp(18))
    kwargs.setdefault("halign", "left")
    kwargs.setdefault("valign", "middle")
    kwargs.setdefault("shorten", True)
    kwargs.setdefault("shorten_from", "right")
    kwargs.setdefault("color", theme.TEXT)
    label = Label(**kwargs)
    label.bind(size=lambda *_: setattr(label, "text_size", label.size))
    label.text_size = label.size
    return label


class ProtoMorph(Morph):
    """A persona's live object: name, role, model (and the LoRA adapter it carries), status and its
    last dissonance."""

    name = StringProperty()
    model = StringProperty()
    adapter = StringProperty()  # the adapter's job id, "" on the base model
    status = StringProperty("idle")

    def __init__(self, proto: dict, **kwargs):
        kwargs.setdefault("size", (dp(236), dp(112)))
        super().__init__(**kwargs)
        self.proto: dict = {}
        self.key = f"proto:{proto['name']}"
        self.accent = theme.persona_rgba(proto["name"])
        top = BoxLayout(size_hint_y=None, height=dp(26), spacing=dp(6))
        self._name = _line_label(font_name=theme.BOLD_FONT, font_size=sp(theme.FONT_TITLE), height=dp(26),
                                 color=self.accent)
        self._dot = StatusDot(pos_hint={"center_y": 0.5})
        self._status = _line_label(font_size=sp(theme.FONT_SMALL), size_hint_x=None, width=dp(70), height=dp(26),
                                   color=theme.MUTED)
        top.add_widget(self._name)
        top.add_widget(self._dot)
        top.add_widget(self._status)
        self._role = _line_label(font_size=sp(theme.FONT_SMALL), color=theme.MUTED)
        self._model = _line_label(font_name=theme.MONO_FONT, font_size=sp(theme.FONT_SMALL))
        bottom = BoxLayout(size_hint_y=None, height=dp(20), spacing=dp(8))
        self._dissonance = _line_label(font_size=sp(theme.FONT_SMALL), size_hint_x=None, width=dp(118),
                                       height=dp(20), color=theme.MUTED)
        bar_box = BoxLayout(padding=(0, dp(7)))
        self._bar = LevelBar()
        bar_box.add_widget(self._bar)
        bottom.add_widget(self._dissonance)
        bottom.add_widget(bar_box)
        for child in (top, self._role, self._model, bottom):
            self.add_widget(child)
        self._pulse: Animation | None = None
        self.update(proto)

    def update(self, proto: dict) -> None:
        """Show a proto map from a snapshot, a `proto` event or an `update_proto` reply."""
        self.proto = dict(proto)
        self.name = str(proto.get("name", ""))
        self.model = str(proto.get("model", ""))
        self.adapter = str(proto.get("adapter") or "")
        self.status = str(proto.get("status", "idle"))
        self._name.text = self.name
        self._role.text = str(proto.get("role", ""))
        self._model.text = f"{self.model}  · LoRA {self.adapter}" if self.adapter else self.model
        self._status.text = self.status
        self._dot.colour = theme.hex_rgba(theme.status_hex(self.status))
        value = proto.get("last_dissonance")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self._dissonance.text = f"dissonance {float(value):.2f}"
            self._bar.value = float(value)
        else:
            self._dissonance.text = "dissonance  –"
            self._bar.value = -1.0
        self._animate(self.status != "idle")

    def _animate(self, active: bool) -> None:
        if active and self._pulse is None:
            self._pulse = Animation(glow=1.0, duration=0.5) + Animation(glow=0.25, duration=0.5)
            self._pulse.repeat = True
            self._pulse.start(self)
        elif not active and self._pulse is not None:
            self._pulse.cancel(self)
            self._pulse = None
            self.glow = 0.0


class ToolMorph(Morph):
    """A tool the ToolForge made: name, signature and status; a tap shows its spec and source."""

    name = StringProperty()

    def __init__(self, tool: dict, **kwargs):
        kwargs.setdefault("size", (dp(196), dp(66)))
        super().__init__(**kwargs)
        self.tool: dict = {}
        self.key = f"tool:{tool['name']}"
        self.accent = theme.TOOL
        self._name = _line_label(font_name=theme.BOLD_FONT, font_size=sp(theme.FONT_BODY), color=theme.TOOL,
                                 height=dp(20))
        self._signature = _line_label(font_name=theme.MONO_FONT, font_size=sp(theme.FONT_SMALL - 1))
        self._status = _line_label(font_size=sp(theme.FONT_SMALL - 1), color=theme.MUTED, height=dp(16))
        for child in (self._name, self._signature, self._status):
            self.add_widget(child)
        self.update(tool)

    def update(self, tool: dict) -> None:
        self.tool = dict(tool)
        self.name = str(tool.get("name", ""))
        self._name.text = self.name
        self._signature.text = str(tool.get("signature") or f"{self.name}(…)")
        status = str(tool.get("status") or "registered")
        model = tool.get("model")
        self._status.text = f"tool · {status}" + (f" · by {model}" if model else "")


class MorphCanvas(Widget):
    """Holds the morphs, places them from remembered fractions and saves where they are dropped."""

    def __init__(self, positions: MorphPositions, on_proto_context: Callable[[str], None],
                 on_tool_tap: Callable[[str], None], **kwargs):
        super().__init__(**kwargs)
        self.positions = positions
        self._on_proto_context = on_proto_context
        self._on_tool_tap = on_tool_tap
        self.protos: dict[str, ProtoMorph] = {}
        self.tools: dict[str, ToolMorph] = {}
        with self.canvas.before:
            Color(rgba=theme.BACKGROUND)
            self._bg = RoundedRectangle(radius=[dp(6)])
            Color(1, 1, 1, 0.035)
            self._grid = Mesh(mode="lines")
            self._link_colour = Color(1, 1, 1, 0.13)
            self._links = Line(width=dp(1.4), close=True)
        self._redraw_grid = Clock.create_trigger(self._draw_grid)
        self._redraw_links = Clock.create_trigger(self._draw_links)
        self.bind(pos=self._relayout, size=self._relayout)

    # --- morphs -------------------------------------------------------------------------------
    def upsert_proto(self, proto: dict) -> ProtoMorph:
        name = proto["name"]
        morph = self.protos.get(name)
        if morph is None:
            morph = ProtoMorph(proto)
            morph.bind(on_context=lambda m: self._on_proto_context(m.name),
                       on_drag_end=self._remember, pos=lambda *_: self._redraw_links())
            self.protos[name] = morph
            self._place(morph, self._proto_home(name))
            self._redraw_links()
        else:
            morph.update(proto)
        return morph

    def upsert_tool(self, tool: dict) -> ToolMorph:
        name = tool["name"]
        morph = self.tools.get(name)
        if morph is None:
            morph = ToolMorph(tool)
            morph.bind(on_tap=lambda m: self._on_tool_tap(m.name), on_context=lambda m: self._on_tool_tap(m.name),
                       on_drag_end=self._remember)
            self.tools[name] = morph
            self._place(morph, self._tool_home(len(self.tools) - 1, morph.size))
        else:
            morph.update(tool)
        return morph

    def _proto_home(self, name: str) -> tuple[float, float]:
        if name in PROTO_HOME:
            return PROTO_HOME[name]
        extra = len([n for n in self.protos if n not in PROTO_HOME]) - 1
        return (0.3 + 0.4 * (extra % 2), max(0.3, 0.62 - 0.12 * (extra // 2)))

    def _tool_home(self, index: int, size: tuple[float, float]) -> tuple[float, float]:
        """Tools fill rows from the bottom-left, side by side while the canvas has room."""
        gap = dp(10)
        w, h = size
        free_w, free_h = self.width - w, self.height - h
        if free_w <= 0 or free_h <= 0:  # not laid out yet: a nominal three-column grid
            return (0.5 * (index % 3), min(0.35, 0.2 * (index // 3)))
        cols = max(1, int((self.width + gap) // (w + gap)))
        x, y = (index % cols) * (w + gap), (index // cols) * (h + gap)
        return (min(1.0, x / free_w), min(0.45, y / free_h))

    def _place(self, morph: Morph, default: tuple[float, float]) -> None:
        morph.frac = list(self.positions.get(morph.key) or default)
        self.add_widget(morph)
        self._position(morph)

    def _position(self, morph: Morph) -> None:
        fx, fy = morph.frac
        morph.pos = (self.x + fx * max(0, self.width - morph.width), self.y + fy * max(0, self.height - morph.height))

    def _relayout(self, *_):
        for morph in self.children:
            if isinstance(morph, Morph):
                self._position(morph)
        self._redraw_grid()
        self._redraw_links()

    def raise_morph(self, morph: Morph) -> None:
        """Bring a morph to the front (it is drawn last)."""
        if self.children and self.children[0] is not morph:
            self.remove_widget(morph)
            self.add_widget(morph)

    def drag_morph(self, morph: Morph, x: float, y: float) -> None:
        """Move a morph to (x, y), kept inside the canvas, and record it as fractions."""
        free_w, free_h = max(0, self.width - morph.width), max(0, self.height - morph.height)
        x = min(max(x, self.x), self.x + free_w)
        y = min(max(y, self.y), self.y + free_h)
        morph.pos = (x, y)
        morph.frac = [(x - self.x) / free_w if free_w else 0.0, (y - self.y) / free_h if free_h else 0.0]

    def _remember(self, morph: Morph) -> None:
        self.positions.set(morph.key, tuple(morph.frac))
        self.positions.save()

    # --- drawing ------------------------------------------------------------------------------
    def _draw_grid(self, *_):
        self._bg.pos, self._bg.size = self.pos, self.size
        step = dp(32)
        segments: list[tuple[float, float, float, float]] = []
        x = self.x + step
        while x < self.right:
            segments.append((x, self.y, x, self.top))
            x += step
        y = self.y + step
        while y < self.top:
            segments.append((self.x, y, self.right, y))
            y += step
        vertices: list[float] = []
        for x0, y0, x1, y1 in segments:
            vertices += [x0, y0, 0, 0, x1, y1, 0, 0]
        self._grid.vertices = vertices
        self._grid.indices = list(range(2 * len(segments)))

    def _draw_links(self, *_):
        ordered = [self.protos[n] for n in PROTO_ORDER if n in self.protos]
        ordered += [m for n, m in self.protos.items() if n not in PROTO_ORDER]
        if len(ordered) < 2:
            self._links.points = []
            return
        self._links.points = [v for m in ordered for v in m.center]
