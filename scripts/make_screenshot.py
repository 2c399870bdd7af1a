"""Regenerate docs/screenshot.png from a real task answered by the default embedded model.

Starts a real backend (the project's own settings, so the capable default model) on free loopback
ports with a scratch data dir, opens the real Kivy window offscreen, types the task, waits for the
answer and saves the window.  Usage: .venv/bin/python scripts/make_screenshot.py [TASK] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.backend import BackendProcess  # noqa: E402
from tests.support.config import write_config  # noqa: E402
from tests.support.ui_harness import (press_enter, running_workspace, screenshot, tap, type_text,  # noqa: E402
                                      ui_settings, wait_stable, wait_until)

TASK = "A friend of mine is nervous about a job interview tomorrow. What three things should she do tonight?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", nargs="?", default=TASK)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="a4ps-screenshot-"))
    from a4ps.config import load_settings

    model = load_settings().models.embedded.model  # the default model, not the tests' small one
    config = write_config(root / "config", settings={"models.embedded.model": model, "graph.tools": True})
    started = time.monotonic()
    with BackendProcess(root / "data", config) as backend:
        settings = ui_settings(config, root / "ui-data", backend.pub_addr, backend.rep_addr)
        with running_workspace(settings, backend.token_file) as workspace:
            wait_until(lambda: workspace.snapshots > 0 and len(workspace.morph_canvas.protos) == 3, 60, "the snapshot")
            tap(workspace.task_box.input)
            type_text(args.task)
            press_enter()
            wait_until(lambda: any(t.get("status") in ("done", "failed", "cancelled")
                                   for t in workspace.tasks.values()), 900, "the answer")
            wait_stable(lambda: len(workspace.dialogue.body.children), 10, "the dialogue to stop growing")
            shot = screenshot(Path(args.out))
            status = [t.get("status") for t in workspace.tasks.values()]
    print(f"{shot} ({shot.stat().st_size} bytes) after {time.monotonic() - started:.0f} s; task {status}")


if __name__ == "__main__":
    main()
