"""What the Curator must remember across restarts: the judged episodes and the user's ratings.

Why: an episode is judged once and added once, also after a crash or a restart, and a rating is the
user's word, which must outlive the process. Judgements go to an append-only journal
(`<data_dir>/curator/judged.jsonl`, a4ps/curator/lines.py); the ratings, the last pass and the
failed attempts live in `<data_dir>/curator/state.json`, replaced atomically.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from a4ps.atomicfile import read_json, write_json
from a4ps.curator.lines import append_lines, read_lines

log = logging.getLogger(__name__)

UP, DOWN = "up", "down"
RATINGS = (UP, DOWN)
SHOWN_RATINGS = 100  # the newest ratings in the snapshot (thumbs shown on the tasks in the window)


class CurationLedger:
    """Judgements by episode id, ratings by task id, the last pass, failed judging attempts."""

    def __init__(self, folder: Path):
        self._journal, self._state_path = folder / "judged.jsonl", folder / "state.json"
        self._lock = threading.RLock()
        read = read_lines(self._journal)
        self.torn_lines = int(read.torn_tail) + read.bad_lines
        self._judged: dict[str, dict[str, Any]] = {}
        for record in read.records:
            if isinstance(record.get("episode_id"), str):
                self._judged[record["episode_id"]] = record  # a repeated id (never written twice): last wins
        try:
            state = read_json(self._state_path) or {}
        except ValueError as exc:  # a damaged file loses the ratings record, never the backend
            log.error("%s; the curator starts without ratings", exc)
            state = {}
        ratings = state.get("ratings") if isinstance(state.get("ratings"), dict) else {}
        self._ratings = {k: v for k, v in ratings.items() if isinstance(v, dict) and v.get("rating") in RATINGS}
        self.last_run: dict[str, Any] | None = state.get("last_run") if isinstance(state.get("last_run"), dict) else None
        failures = state.get("failures") if isinstance(state.get("failures"), dict) else {}
        self._failures = {k: int(v) for k, v in failures.items() if isinstance(v, int)}

    def _save(self) -> None:
        write_json(self._state_path, {"ratings": self._ratings, "last_run": self.last_run,
                                      "failures": self._failures})

    # --- judgements -------------------------------------------------------------------------------
    def judged(self, episode_id: str) -> bool:
        with self._lock:
            return episode_id in self._judged

    def record(self, judgement: dict[str, Any]) -> None:
        """Journal one judgement (durable when this returns)."""
        with self._lock:
            append_lines(self._journal, [judgement])
            self._judged[judgement["episode_id"]] = judgement
            if self._failures.pop(judgement["episode_id"], None) is not None:
                self._save()

    def judgements(self, task_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [j for j in self._judged.values() if task_id is None or j.get("task_id") == task_id]

    # --- failures ---------------------------------------------------------------------------------
    def failed(self, episode_id: str) -> int:
        """Count one more failed attempt to judge this episode; returns the count."""
        with self._lock:
            self._failures[episode_id] = self._failures.get(episode_id, 0) + 1
            self._save()
            return self._failures[episode_id]

    def failures(self, episode_id: str) -> int:
        with self._lock:
            return self._failures.get(episode_id, 0)

    def given_up(self, limit: int) -> int:
        with self._lock:
            return sum(1 for count in self._failures.values() if count >= limit)

    # --- ratings and passes -----------------------------------------------------------------------
    def rate(self, task_id: str, rating: str) -> None:
        if rating not in RATINGS:
            raise ValueError(f"a rating is 'up' or 'down', not {rating!r}")
        with self._lock:
            self._ratings[task_id] = {"rating": rating, "at": time.time()}
            self._save()

    def rating(self, task_id: str) -> str | None:
        with self._lock:
            entry = self._ratings.get(task_id)
            return entry["rating"] if entry else None

    def ratings(self, newest: int | None = None) -> dict[str, str]:
        with self._lock:
            ordered = sorted(self._ratings.items(), key=lambda item: item[1].get("at", 0))
            if newest is not None:
                ordered = ordered[-newest:]
            return {task_id: entry["rating"] for task_id, entry in ordered}

    def finish_pass(self, summary: dict[str, Any]) -> None:
        with self._lock:
            self.last_run = summary
            self._save()
