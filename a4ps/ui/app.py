"""Entry point of the UI process: `run_ui(settings)` configures Kivy, then runs the EntropicApp."""

from __future__ import annotations

import logging
import os
import signal

from a4ps.config import Settings

log = logging.getLogger(__name__)


def configure_kivy() -> None:
    """Kivy options that must be set before its window exists (so kivy.core.window is imported after)."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")  # the a4ps CLI owns argv
    # Mesa's software renderer: rasterize on the drawing thread. Its worker threads stall for
    # seconds when the backend's model keeps every core busy; a real GPU ignores this.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    from kivy.config import Config

    from a4ps.ui.theme import WINDOW_SIZE

    Config.set("graphics", "width", str(WINDOW_SIZE[0]))
    Config.set("graphics", "height", str(WINDOW_SIZE[1]))
    Config.set("graphics", "minimum_width", "960")
    Config.set("graphics", "minimum_height", "640")
    Config.set("input", "mouse", "mouse,disable_multitouch")  # right-click opens the Inspector
    Config.set("kivy", "exit_on_escape", "0")


def run_ui(settings: Settings) -> int:
    """Open the Entropic UI on the backend named in `settings.zmq`; blocks until the window closes.

    SIGINT and SIGTERM close the window cleanly (the frame loop stops, the sockets are closed).
    """
    configure_kivy()
    from kivy.clock import Clock

    from a4ps.ui.workspace import EntropicApp

    app = EntropicApp(settings)

    def close(signum: int, _frame: object) -> None:
        log.info("closing the UI (%s)", signal.Signals(signum).name)
        Clock.schedule_once(lambda _dt: app.stop(), 0)

    previous = {sig: signal.signal(sig, close) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        app.run()
    except SystemExit as exc:  # Kivy exits this way when no window can be created
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
