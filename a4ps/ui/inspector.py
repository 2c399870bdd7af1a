"""Inspectors: a proto's live state, editable ("cognitive surgery"), and a tool's spec and source."""

from __future__ import annotations

import time
from typing import Callable

from kivy.metrics import dp, sp
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.scrollview import ScrollView
from kivy.uix.slider import Slider

from a4ps.ui import theme
from a4ps.ui.widgets import (FlatButton, KeyValueLabel, Panel, SectionTitle, WrappedLabel, spacer, text_blocks,
                             text_input)

MAX_TOKENS_RANGE = (16, 4096)


def _field_label(text: str) -> Label:
    label = Label(text=text, size_hint_x=None, width=dp(120), halign="left", valign="middle",
                  color=theme.MUTED, font_size=sp(theme.FONT_BODY))
    label.bind(size=lambda *_: setattr(label, "text_size", label.size))
    label.text_size = label.size
    return label


class _SliderField(BoxLayout):
    """A slider with its value printed beside it."""

    def __init__(self, low: float, high: float, step: float, value: float, **kwargs):
        kwargs.setdefault("spacing", dp(8))
        super().__init__(**kwargs)
        self.slider = Slider(min=low, max=high, step=step, value=value, cursor_size=(dp(18), dp(18)),
                             value_track=True, value_track_color=theme.ACCENT, value_track_width=dp(3))
        self.value_label = Label(size_hint_x=None, width=dp(48), color=theme.TEXT, font_name=theme.MONO_FONT,
                                 font_size=sp(theme.FONT_BODY))
        self.slider.bind(value=lambda *_: setattr(self.value_label, "text", f"{self.slider.value:.2f}"))
        self.value_label.text = f"{value:.2f}"
        self.add_widget(self.slider)
        self.add_widget(self.value_label)


class ProtoInspector(ModalView):
    """Shows a proto's live state and sends edits of prompt, model and sampling as `update_proto`."""

    def __init__(self, proto: dict, on_apply: Callable[[str, dict], None], **kwargs):
        kwargs.setdefault("size_hint", (None, None))
        kwargs.setdefault("size", (dp(640), dp(640)))
        kwargs.setdefault("auto_dismiss", False)
        kwargs.setdefault("background_color", (0, 0, 0, 0))
        kwargs.setdefault("overlay_color", (0, 0, 0, 0.55))
        super().__init__(**kwargs)
        self.name = str(proto["name"])
        self._on_apply = on_apply
        self.proto: dict = {}
        panel = Panel(padding=(dp(16), dp(12), dp(16), dp(14)), spacing=dp(8), fill=theme.PANEL_RAISED)
        title = Label(text=f"Inspector  ·  {self.name}", font_name=theme.BOLD_FONT, font_size=sp(20),
                      color=theme.persona_rgba(self.name), size_hint_y=None, height=dp(30), halign="left",
                      valign="middle")
        title.bind(size=lambda *_: setattr(title, "text_size", title.size))
        panel.add_widget(title)
        panel.add_widget(SectionTitle(text="live state"))
        self.live = KeyValueLabel(font_size=sp(theme.FONT_BODY))
        panel.add_widget(self.live)
        panel.add_widget(SectionTitle(text="cognitive surgery"))

        form = GridLayout(cols=2, spacing=(dp(8), dp(8)), size_hint_y=None)
        form.bind(minimum_height=form.setter("height"))
        self.model_input = text_input(multiline=False, size_hint_y=None, height=dp(38), font_name=theme.MONO_FONT)
        self.temperature = _SliderField(0.0, 2.0, 0.05, 0.0, size_hint_y=None, height=dp(38))
        self.top_p = _SliderField(0.0, 1.0, 0.05, 0.0, size_hint_y=None, height=dp(38))
        self.max_tokens_input = text_input(multiline=False, input_filter="int", size_hint_y=None, height=dp(38))
        for text, widget in (("Model", self.model_input), ("Temperature", self.temperature), ("Top p", self.top_p),
                             ("Max tokens", self.max_tokens_input)):
            form.add_widget(_field_label(text))
            form.add_widget(widget)
        panel.add_widget(form)
        prompt_label = _field_label("System prompt")
        prompt_label.size_hint = (1, None)
        prompt_label.height = dp(22)
        panel.add_widget(prompt_label)
        self.prompt_input = text_input(multiline=True)
        panel.add_widget(self.prompt_input)

        self.message = WrappedLabel(color=theme.MUTED, font_size=sp(theme.FONT_SMALL + 1))
        panel.add_widget(self.message)
        buttons = BoxLayout(size_hint_y=None, height=dp(40), spacing=dp(10))
        buttons.add_widget(spacer())
        self.close_button = FlatButton(text="Close", fill=theme.PANEL_EDGE, size_hint_x=None, width=dp(110))
        self.apply_button = FlatButton(text="Apply", size_hint_x=None, width=dp(130))
        self.close_button.bind(on_release=lambda *_: self.dismiss())
        self.apply_button.bind(on_release=lambda *_: self.apply())
        buttons.add_widget(self.close_button)
        buttons.add_widget(self.apply_button)
        panel.add_widget(buttons)
        self.add_widget(panel)
        self.load(proto)

    def load(self, proto: dict) -> None:
        """Fill the form and the live section from a proto map."""
        self.proto = dict(proto)
        self.model_input.text = str(proto.get("model", ""))
        self.temperature.slider.value = float(proto.get("temperature") or 0.0)
        self.top_p.slider.value = float(proto.get("top_p") or 0.0)
        self.max_tokens_input.text = str(proto.get("max_tokens", ""))
        self.prompt_input.text = str(proto.get("system_prompt", ""))
        self.show_live(proto)

    def show_live(self, proto: dict) -> None:
        """Refresh the read-only part (status, counters) without touching the user's edits."""
        counters = proto.get("counters") or {}
        value = proto.get("last_dissonance")
        self.live.set_rows([
            ("role", str(proto.get("role", ""))),
            ("status", str(proto.get("status", ""))),
            ("model", str(proto.get("model", ""))),
            ("last dissonance", f"{value:.2f}" if isinstance(value, (int, float)) else "–"),
            ("counters", f"{counters.get('calls', 0)} calls · {counters.get('tokens', 0)} tokens · "
                         f"{counters.get('tasks', 0)} tasks"),
        ])

    def changes(self) -> dict:
        """The edited fields that differ from the loaded proto. Raises ValueError on bad input."""
        changes: dict = {}
        model = self.model_input.text.strip()
        if not model:
            raise ValueError("the model name is empty")
        if model != self.proto.get("model"):
            changes["model"] = model
        for key, field in (("temperature", self.temperature), ("top_p", self.top_p)):
            value = round(float(field.slider.value), 2)
            if value != round(float(self.proto.get(key) or 0.0), 2):
                changes[key] = value
        try:
            max_tokens = int(self.max_tokens_input.text)
        except ValueError:
            raise ValueError("max tokens must be a whole number") from None
        low, high = MAX_TOKENS_RANGE
        if not low <= max_tokens <= high:
            raise ValueError(f"max tokens must be between {low} and {high}")
        if max_tokens != self.proto.get("max_tokens"):
            changes["max_tokens"] = max_tokens
        prompt = self.prompt_input.text
        if not prompt.strip():
            raise ValueError("the system prompt is empty")
        if prompt != self.proto.get("system_prompt"):
            changes["system_prompt"] = prompt
        return changes

    def apply(self) -> None:
        """Send the changes (if any) to the backend."""
        try:
            changes = self.changes()
        except ValueError as exc:
            self._say(str(exc), theme.BAD)
            return
        if not changes:
            self._say("Nothing changed.", theme.MUTED)
            return
        self.apply_button.disabled = True
        self._say(f"Sending {', '.join(sorted(changes))} …", theme.MUTED)
        self._on_apply(self.name, changes)

    def apply_result(self, reply: dict) -> None:
        """Show the backend's answer; on success the form shows the proto the backend now holds."""
        self.apply_button.disabled = False
        if reply.get("ok") and isinstance(reply.get("proto"), dict):
            before = self.proto
            self.load(reply["proto"])
            changed = sorted(k for k in reply["proto"] if reply["proto"].get(k) != before.get(k)
                             and k not in ("status", "counters", "last_dissonance"))
            self._say(f"Applied at {time.strftime('%H:%M:%S')}: {', '.join(changed) or 'no visible change'}.",
                      theme.GOOD)
        else:
            self._say(f"Not applied: {reply.get('error', 'unknown error')}", theme.BAD)

    def _say(self, text: str, colour) -> None:
        self.message.color = colour
        self.message.text = text


class ToolInspector(ModalView):
    """A tool's spec, signature, docstring, source and tests (read-only)."""

    def __init__(self, tool: dict, **kwargs):
        kwargs.setdefault("size_hint", (None, None))
        kwargs.setdefault("size", (dp(760), dp(640)))
        kwargs.setdefault("background_color", (0, 0, 0, 0))
        kwargs.setdefault("overlay_color", (0, 0, 0, 0.55))
        super().__init__(**kwargs)
        self.tool = dict(tool)
        panel = Panel(padding=(dp(16), dp(12), dp(16), dp(14)), spacing=dp(8), fill=theme.PANEL_RAISED)
        title = Label(text=f"Tool  ·  {tool.get('name', '')}", font_name=theme.BOLD_FONT, font_size=sp(20),
                      color=theme.TOOL, size_hint_y=None, height=dp(30), halign="left", valign="middle")
        title.bind(size=lambda *_: setattr(title, "text_size", title.size))
        panel.add_widget(title)
        scroll = ScrollView(do_scroll_x=False, always_overscroll=False, scroll_wheel_distance=dp(48), bar_width=dp(6),
                            scroll_type=["bars", "content"])
        body = BoxLayout(orientation="vertical", size_hint_y=None, spacing=dp(6), padding=(0, 0, dp(10), 0))
        body.bind(minimum_height=body.setter("height"))
        details = KeyValueLabel()
        created = tool.get("created_at")
        details.set_rows([
            ("signature", str(tool.get("signature", ""))),
            ("status", str(tool.get("status", ""))),
            ("author model", str(tool.get("model", ""))),
            ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
             if isinstance(created, (int, float)) else "–"),
            ("source hash", str(tool.get("source_hash", ""))[:16]),
        ])
        body.add_widget(details)
        for heading, key, mono in (("docstring", "docstring", False), ("spec", "spec", False),
                                   ("source", "source", True), ("tests", "tests", True)):
            body.add_widget(SectionTitle(text=heading))
            for block in text_blocks(str(tool.get(key) or "–"), mono=mono):
                body.add_widget(block)
        scroll.add_widget(body)
        panel.add_widget(scroll)
        buttons = BoxLayout(size_hint_y=None, height=dp(40))
        buttons.add_widget(spacer())
        close = FlatButton(text="Close", fill=theme.PANEL_EDGE, size_hint_x=None, width=dp(110))
        close.bind(on_release=lambda *_: self.dismiss())
        buttons.add_widget(close)
        panel.add_widget(buttons)
        self.add_widget(panel)
        self.body = body

