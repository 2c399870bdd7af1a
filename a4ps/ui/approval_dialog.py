"""ApprovalDialog: the human gate for a codex amendment (diff, legislative history, consequences).

The proposal shown is the one `get_proposal` returned (history included). Approve stays disabled
until the legislative history has been scrolled to its end (or fits on screen whole); an approval
goes to the backend as `decide_proposal` with the proposal's `history_digest`, which the backend
demands as proof that the history was fetched.
"""

from __future__ import annotations

from typing import Callable

from kivy.clock import Clock
from kivy.graphics import Color, RoundedRectangle
from kivy.metrics import dp, sp
from kivy.properties import BooleanProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.scrollview import ScrollView

from a4ps.ui import theme
from a4ps.ui.widgets import FlatButton, Panel, SectionTitle, WrappedLabel, spacer, text_blocks

# scroll_y at or below this counts as "at the end" of the history
END_TOLERANCE = 0.005


def parse_proposal(event: dict) -> dict:
    """The proposal fields of a `codex_proposal` event, typed; raises ValueError without an id."""
    proposal_id = event.get("proposal_id")
    if not isinstance(proposal_id, (str, int)) or isinstance(proposal_id, bool) or proposal_id == "":
        raise ValueError("codex_proposal without a proposal_id")
    history = event.get("history")
    if not isinstance(history, list):
        history = [] if history is None else [history]
    return {
        "proposal_id": proposal_id,
        "diff": str(event.get("diff") or ""),
        "history": [str(item) for item in history],
        "consequences": str(event.get("consequences") or ""),
        "justification": str(event.get("justification") or ""),
        "history_digest": str(event.get("history_digest") or ""),
    }


def diff_colour(line: str) -> str | None:
    if line.startswith(("+++", "---")):
        return theme.MUTED_HEX
    if line.startswith("+"):
        return theme.GOOD_HEX
    if line.startswith("-"):
        return theme.BAD_HEX
    if line.startswith("@@"):
        return theme.HUNK_HEX
    return None


def _scroll_box() -> tuple[ScrollView, BoxLayout]:
    """A scrollable column on a darker ground, so it reads as a box of its own."""
    scroll = ScrollView(do_scroll_x=False, always_overscroll=False, scroll_wheel_distance=dp(48), bar_width=dp(7),
                        scroll_type=["bars", "content"], bar_color=(0.55, 0.6, 0.7, 0.9),
                        bar_inactive_color=(0.55, 0.6, 0.7, 0.45))
    with scroll.canvas.before:
        Color(rgba=theme.INPUT)
        ground = RoundedRectangle(radius=[dp(6)])
    scroll.bind(pos=lambda *_: setattr(ground, "pos", scroll.pos), size=lambda *_: setattr(ground, "size", scroll.size))
    body = BoxLayout(orientation="vertical", size_hint_y=None, spacing=dp(6), padding=(dp(10), dp(8), dp(14), dp(8)))
    body.bind(minimum_height=body.setter("height"))
    scroll.add_widget(body)
    return scroll, body


class ApprovalDialog(ModalView):
    """Modal: the proposed diff, the scrollable legislative history, the consequences, and the decision.

    `on_decide(proposal_id, decision)` is called with "approve" or "reject"; the caller sends it
    and reports back with `decision_result(reply)`.
    """

    history_read = BooleanProperty(False)

    def __init__(self, proposal: dict, on_decide: Callable[[object, str], None], **kwargs):
        kwargs.setdefault("size_hint", (0.86, 0.9))
        kwargs.setdefault("auto_dismiss", False)
        kwargs.setdefault("background_color", (0, 0, 0, 0))
        kwargs.setdefault("overlay_color", (0, 0, 0, 0.65))
        super().__init__(**kwargs)
        self.proposal = proposal
        self.proposal_id = proposal["proposal_id"]
        self._on_decide = on_decide
        self._reached_end = False
        self._sending = False

        panel = Panel(padding=(dp(18), dp(14), dp(18), dp(14)), spacing=dp(8), fill=theme.PANEL_RAISED,
                      edge=theme.WARN)
        title = Label(text="Codex amendment proposed", font_name=theme.BOLD_FONT, font_size=sp(21),
                      color=theme.WARN, size_hint_y=None, height=dp(30), halign="left", valign="middle")
        title.bind(size=lambda *_: setattr(title, "text_size", title.size))
        panel.add_widget(title)
        self.justification = WrappedLabel(text=proposal["justification"] or "(no justification given)",
                                          color=theme.TEXT)
        panel.add_widget(self.justification)

        columns = BoxLayout(spacing=dp(14))
        left = BoxLayout(orientation="vertical", spacing=dp(6))
        left.add_widget(SectionTitle(text="proposed change (diff)"))
        self.diff_scroll, diff_body = _scroll_box()
        for block in text_blocks(proposal["diff"] or "(empty diff)", mono=True, colour_line=diff_colour):
            diff_body.add_widget(block)
        left.add_widget(self.diff_scroll)
        left.add_widget(SectionTitle(text="consequences"))
        consequences_scroll, consequences_body = _scroll_box()
        consequences_scroll.size_hint_y = 0.55
        for block in text_blocks(proposal["consequences"] or "(no analysis given)"):
            consequences_body.add_widget(block)
        left.add_widget(consequences_scroll)

        right = BoxLayout(orientation="vertical", spacing=dp(6))
        right.add_widget(SectionTitle(text=f"legislative history ({len(proposal['history'])} entries)"))
        self.history_scroll, self.history_body = _scroll_box()
        for number, entry in enumerate(proposal["history"], 1):
            self.history_body.add_widget(WrappedLabel(text=f"#{number}", color=theme.MUTED,
                                                      font_size=sp(theme.FONT_SMALL), font_name=theme.BOLD_FONT))
            for block in text_blocks(entry):
                self.history_body.add_widget(block)
        if not proposal["history"]:
            self.history_body.add_widget(WrappedLabel(text="(no history given)", color=theme.MUTED))
        right.add_widget(self.history_scroll)
        columns.add_widget(left)
        columns.add_widget(right)
        panel.add_widget(columns)

        self.hint = WrappedLabel(color=theme.MUTED, font_size=sp(theme.FONT_SMALL + 1))
        panel.add_widget(self.hint)
        buttons = BoxLayout(size_hint_y=None, height=dp(42), spacing=dp(12))
        buttons.add_widget(spacer())
        self.reject_button = FlatButton(text="Reject", fill=theme.BAD, size_hint_x=None, width=dp(140))
        self.approve_button = FlatButton(text="Approve", fill=theme.GOOD, size_hint_x=None, width=dp(140))
        self.reject_button.bind(on_release=lambda *_: self.decide("reject"))
        self.approve_button.bind(on_release=lambda *_: self.decide("approve"))
        buttons.add_widget(self.reject_button)
        buttons.add_widget(self.approve_button)
        panel.add_widget(buttons)
        self.add_widget(panel)

        self._check = Clock.create_trigger(self._check_read)
        self.history_scroll.bind(scroll_y=self._check, height=self._check)
        self.history_body.bind(height=self._check)
        self._refresh_buttons()

    def _check_read(self, *_):
        """Read once the user scrolled to the end, or while the whole history fits in view."""
        content, view = self.history_body.height, self.history_scroll.height
        if content > view and self.history_scroll.scroll_y <= END_TOLERANCE:
            self._reached_end = True
        fits = 0 < content <= view
        self.history_read = self._reached_end or fits
        self._refresh_buttons()

    def on_history_read(self, *_):
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        self.approve_button.disabled = self._sending or not self.history_read
        self.reject_button.disabled = self._sending
        if self._sending:
            return
        if self.history_read:
            self.hint.text = "History read. Approve writes the new codex and reloads the personas; Reject logs it."
            self.hint.color = theme.MUTED
        else:
            self.hint.text = "Scroll the legislative history to its end to enable Approve."
            self.hint.color = theme.WARN

    @property
    def sending(self) -> bool:
        """A decision was sent and its reply has not come back."""
        return self._sending

    def decide(self, decision: str) -> None:
        """Send "approve" (only once the history was read) or "reject"."""
        if decision == "approve" and not self.history_read:
            return
        self._sending = True
        self._refresh_buttons()
        self.hint.text = f"Sending {decision} …"
        self.hint.color = theme.MUTED
        self._on_decide(self.proposal_id, decision)

    def decision_result(self, reply: dict) -> None:
        """Close on success; otherwise show why and let the user decide again."""
        self._sending = False
        if reply.get("ok"):
            self.dismiss()
            return
        self._refresh_buttons()
        self.hint.text = f"The backend did not take the decision: {reply.get('error', 'unknown error')}"
        self.hint.color = theme.BAD
