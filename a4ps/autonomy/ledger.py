"""What the Motivator must remember across restarts: the user's choice, the goals it set, the last inquiry.

Why: "paused" is the user's decision and must outlive the process, and neither the hourly goal budget
nor the cooldown after an inquiry may reset because the backend restarted. Kept in
`<data_dir>/autonomy.json`, replaced atomically.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from a4ps.atomicfile import read_json, write_json

log = logging.getLogger(__name__)

RUNNING, PAUSED, OFF = "running", "paused", "off"
KEEP_GOALS = 50


class AutonomyLedger:
    """The user's choice (`running` or `paused`), the recent self-set goals and when an inquiry last ran."""

    def __init__(self, path: Path):
        self._path = path
        self._lock = threading.Lock()
        self.choice, self._goals, self.last_inquiry_at = RUNNING, [], None
        try:
            saved = read_json(path) or {}
        except ValueError as exc:  # a damaged file loses the record, never the backend
            log.error("%s; autonomy starts as running with no goals recorded", exc)
            saved = {}
        if saved.get("choice") in (RUNNING, PAUSED):
            self.choice = saved["choice"]
        self._goals = [g for g in saved.get("goals", []) if isinstance(g, dict) and "goal" in g and "at" in g]
        last = saved.get("last_inquiry_at")
        if isinstance(last, (int, float)) and not isinstance(last, bool):
            self.last_inquiry_at = float(last)

    def _save(self) -> None:
        write_json(self._path, {"choice": self.choice, "goals": self._goals[-KEEP_GOALS:],
                                "last_inquiry_at": self.last_inquiry_at})

    def set_choice(self, choice: str) -> None:
        if choice not in (RUNNING, PAUSED):
            raise ValueError(f"autonomy can be set to running or paused, not {choice!r}")
        with self._lock:
            self.choice = choice
            self._save()

    def note_inquiry(self, at: float) -> None:
        """An inquiry into the codex ran (started or ended) at `at`: the reflection cooldown counts from it."""
        with self._lock:
            self.last_inquiry_at = max(at, self.last_inquiry_at or at)
            self._save()

    def record_goal(self, goal: dict[str, Any]) -> None:
        with self._lock:
            self._goals.append({**goal, "at": goal.get("at", time.time())})
            self._goals = self._goals[-KEEP_GOALS:]
            self._save()

    def goals_since(self, since: float) -> list[dict[str, Any]]:
        with self._lock:
            return [g for g in self._goals if g["at"] >= since]

    def recent_goals(self, limit: int = 10) -> list[str]:
        with self._lock:
            return [g["goal"] for g in self._goals[-limit:]]
