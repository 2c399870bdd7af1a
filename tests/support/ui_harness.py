"""Harness for the UI tests (no tests here): Kivy offscreen in this process, frame stepping,
touches, typing, screenshots, and a Workspace wired to a given backend address.

Importing it configures Kivy before its window exists: no argv parsing (KIVY_NO_ARGS), a temporary
KIVY_HOME instead of ~/.kivy, SDL's offscreen driver unless SDL_VIDEODRIVER is already set.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

os.environ["KIVY_NO_ARGS"] = "1"
if "KIVY_HOME" not in os.environ:
    os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="a4ps-kivy-home-")
    atexit.register(shutil.rmtree, os.environ["KIVY_HOME"], ignore_errors=True)
os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
os.environ.setdefault("KIVY_LOG_LEVEL", "warning")

from a4ps.ui.app import configure_kivy  # noqa: E402

configure_kivy()

from kivy.base import EventLoop  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.tests.common import UnitTestTouch  # noqa: E402
from kivy.uix.modalview import ModalView  # noqa: E402

import msgpack  # noqa: E402
import zmq  # noqa: E402

from a4ps.config import Settings, load_settings  # noqa: E402
from tests.support.config import free_port  # noqa: E402

# Set A4PS_UI_SCREENSHOTS=<dir> to keep a copy of every screenshot the tests take.
SCREENSHOT_COPY_DIR = os.environ.get("A4PS_UI_SCREENSHOTS")


def ensure_window():
    EventLoop.ensure_window()
    return Window


def pump(frames: int = 1) -> None:
    for _ in range(frames):
        EventLoop.idle()


def wait_until(predicate, timeout_s: float, what: str = "condition") -> None:
    """Step frames until predicate() is true; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        EventLoop.idle()
        if predicate():
            return
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_stable(read, timeout_s: float, what: str = "a settled layout", frames: int = 5):
    """Step frames until read() gives the same value `frames` frames in a row (layout and
    animations done, however slow the machine); returns that value."""
    deadline = time.monotonic() + timeout_s
    last, same = object(), 0
    while time.monotonic() < deadline:
        EventLoop.idle()
        value = read()
        same = same + 1 if value == last else 0
        last = value
        if same >= frames:
            return value
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def round_trip(workspace, timeout_s: float = 10.0) -> None:
    """Wait until every command the workspace queued before now was answered (they go in order)."""
    answered: list[dict] = []
    workspace.bridge.request("ping", answered.append)
    wait_until(lambda: bool(answered), timeout_s, "a round trip through the command queue")


def settle(seconds: float) -> None:
    """Keep the frame loop running for a while: only where nothing can be waited for (a long
    press being held, or showing that something does NOT happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        EventLoop.idle()


def _touch(x: float, y: float, button: str | None = None) -> UnitTestTouch:
    touch = UnitTestTouch(x, y)
    if button is not None:
        touch.profile.append("button")
        touch.button = button
    return touch


def tap(widget, button: str | None = None) -> None:
    """A quick click at the widget's centre (window coordinates). Down and up are dispatched
    back to back, so a slow frame can never turn the click into a long press."""
    x, y = widget.to_window(*widget.center)
    touch = _touch(x, y, button)
    touch.touch_down()
    touch.touch_up()
    pump(2)


def drag(widget, dx: float, dy: float, steps: int = 8) -> None:
    """Press at the widget's centre, move by (dx, dy) in steps, release."""
    x, y = widget.to_window(*widget.center)
    touch = _touch(x, y)
    touch.touch_down()
    for i in range(1, steps + 1):
        touch.touch_move(x + dx * i / steps, y + dy * i / steps)
        pump()
    touch.touch_up()
    pump(2)


def wheel(widget, direction: str) -> None:
    """One mouse-wheel notch over the widget ('scrollup' moves the content towards its end)."""
    x, y = widget.to_window(*widget.center)
    touch = _touch(x, y, direction)
    touch.touch_down()
    pump()
    touch.touch_up()
    pump()


def type_text(text: str) -> None:
    """Type into the focused TextInput, one character event at a time, like a keyboard."""
    for ch in text:
        Window.dispatch("on_textinput", ch)
        pump()


def press_enter() -> None:
    Window.dispatch("on_key_down", 13, 36, "\r", [])
    pump()
    Window.dispatch("on_key_up", 13, 36)
    pump()


def screenshot(path: Path) -> Path:
    """Save the window as PNG at `path`, read back in on_flip so the frame is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    taken: list[str] = []

    def on_flip(*_):
        if not taken:
            taken.append(Window.screenshot(name=str(path)))

    Window.bind(on_flip=on_flip)
    try:
        Window.canvas.ask_update()
        wait_until(lambda: bool(taken), 10, "a screenshot")
    finally:
        Window.unbind(on_flip=on_flip)
    os.replace(taken[0], path)
    if SCREENSHOT_COPY_DIR:
        Path(SCREENSHOT_COPY_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SCREENSHOT_COPY_DIR) / path.name)
    return path


def ui_settings(config_dir: Path, data_dir: Path, pub_addr: str, rep_addr: str) -> Settings:
    settings = load_settings(Path(config_dir) / "settings.toml")
    settings.data_dir = str(data_dir)
    settings.zmq.pub_addr, settings.zmq.rep_addr = pub_addr, rep_addr
    return settings


def open_modals() -> list[ModalView]:
    return [w for w in Window.children if isinstance(w, ModalView)]


@contextmanager
def running_workspace(settings: Settings, token_file: Path | None = None):
    """A Workspace as the window's root, connected (with the backend's control token file, whose
    data dir differs from the UI's here); closed (with any dialogs) afterwards."""
    from a4ps.ui.workspace import Workspace

    ensure_window()
    workspace = Workspace(settings, token_file=token_file)
    Window.add_widget(workspace)
    workspace.start()
    try:
        yield workspace
    finally:
        for modal in open_modals():
            modal.dismiss(animation=False)
        workspace.stop()
        Window.remove_widget(workspace)
        pump(2)


class ProtocolPeer:
    """A scripted backend for what a real one cannot be made to do on cue (refuse a decision, lose
    events, answer late), speaking the documented protocol over real sockets: REP records every
    request and answers from `replies` (cmd -> reply map; `set_reply` changes one), holding the
    answers to commands passed to `hold` until `release`; XPUB publishes what the test sends."""

    def __init__(self, replies: dict[str, dict]):
        self.replies = dict(replies)
        self.requests: list[dict] = []
        self._held: dict[str, threading.Event] = {}
        self.pub_addr = f"tcp://127.0.0.1:{free_port()}"
        self.rep_addr = f"tcp://127.0.0.1:{free_port()}"
        self._context = zmq.Context()
        self._rep = self._context.socket(zmq.REP)
        self._rep.bind(self.rep_addr)
        self._pub = self._context.socket(zmq.XPUB)
        self._pub.bind(self.pub_addr)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self._rep.poll(50):
                continue
            request = msgpack.unpackb(self._rep.recv(), raw=False)
            with self._lock:
                self.requests.append(request)
                gate = self._held.get(request.get("cmd"))
            if gate is not None:
                gate.wait(30)
            with self._lock:
                reply = self.replies.get(request.get("cmd"),
                                         {"ok": False, "code": "unknown_command", "error": "not served here"})
            self._rep.send(msgpack.packb(reply, use_bin_type=True))

    def set_reply(self, cmd: str, reply: dict) -> None:
        with self._lock:
            self.replies[cmd] = reply

    def hold(self, cmd: str) -> None:
        """Answer `cmd` only after `release(cmd)` (a slow backend)."""
        with self._lock:
            self._held[cmd] = threading.Event()

    def release(self, cmd: str) -> None:
        with self._lock:
            gate = self._held.pop(cmd, None)
        if gate is not None:
            gate.set()

    def commands(self, cmd: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r.get("cmd") == cmd]

    def wait_subscribed(self, timeout_s: float = 10.0) -> None:
        """Block until a subscriber has joined (XPUB sees the subscription frame)."""
        assert self._pub.poll(int(timeout_s * 1000)), "no subscriber joined"
        self._pub.recv()

    def publish(self, topic: str, event: dict) -> None:
        """Send one event; called from the test's thread (the XPUB is used by no other)."""
        self._pub.send_multipart([topic.encode(), msgpack.packb({"topic": topic, **event}, use_bin_type=True)])

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for gate in self._held.values():
                gate.set()
        self._thread.join(5)
        self._rep.close(linger=0)
        self._pub.close(linger=0)
        self._context.term()
