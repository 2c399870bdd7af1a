"""Entry point of the UI process: `run_ui(settings)` configures Kivy, then runs the EntropicApp."""

from __future__ import annotations

import logging
import os

from a4ps.config import Settings

log = logging.getLogger(__name__)


def configure_kivy() -> None:
    """Kivy options that must be set before its window exists (so kivy.core.window is imported after)."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")  # the a4ps CLI owns argv
    from kivy.config import Config

    from a4ps.ui.theme import WINDOW_SIZE

    Config.set("graphics", "width", str(WINDOW_SIZE[0]))
    Config.set("graphics", "height", str(WINDOW_SIZE[1]))
    Config.set("graphics", "minimum_width", "960")
    Config.set("graphics", "minimum_height", "640")
    Config.set("input", "mouse", "mouse,disable_multitouch")  # right-click opens the Inspector
    Config.set("kivy", "exit_on_escape", "0")


def run_ui(settings: Settings) -> int:
    """Open the Entropic UI on the backend named in `settings.zmq`; blocks until the window closes."""
    configure_kivy()
    from a4ps.ui.workspace import EntropicApp

    try:
        EntropicApp(settings).run()
    except SystemExit as exc:  # Kivy exits this way when no window can be created
        return exc.code if isinstance(exc.code, int) else 1
    return 0
