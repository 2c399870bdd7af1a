"""Which adapter each persona runs with, and the ones it ran with before: kept in the living image.

Why in the image: the choice is live state like a proto's (a restart must not silently return a
persona to its base, nor adopt an adapter nobody chose). Per persona a history of adapters (None:
the base model), the last one in use; a rollback goes one step back. `offered` holds the jobs a
gate promotion already put forward once: a promoted adapter is swapped in at most once by itself,
so one rolled back is not swapped in again behind the person's back. `by_hand` records promotions
of kept-aside adapters by the person.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

HISTORY = 20  # adapters remembered per persona for rollback


class AdapterChoice:
    """Thread-safe; `export`/`restore` are the image's plain data."""

    def __init__(self, saved: Any = None):
        self._lock = threading.Lock()
        self._history: dict[str, list[str | None]] = {}
        self._offered: set[str] = set()
        self._by_hand: set[str] = set()
        if isinstance(saved, dict):
            for persona, history in (saved.get("history") or {}).items():
                if isinstance(history, list) and all(h is None or isinstance(h, str) for h in history):
                    self._history[persona] = list(history)[-HISTORY:]
            self._offered = {j for j in saved.get("offered") or () if isinstance(j, str)}
            self._by_hand = {j for j in saved.get("by_hand") or () if isinstance(j, str)}

    def export(self) -> dict[str, Any]:
        with self._lock:
            return {"history": copy.deepcopy(self._history), "offered": sorted(self._offered),
                    "by_hand": sorted(self._by_hand)}

    def current(self, persona: str) -> str | None:
        with self._lock:
            history = self._history.get(persona) or [None]
            return history[-1]

    def previous(self, persona: str) -> str | None:
        """What a rollback returns to (None: the base model)."""
        with self._lock:
            history = self._history.get(persona) or [None]
            return history[-2] if len(history) > 1 else None

    def in_use(self) -> dict[str, str]:
        with self._lock:
            return {p: h[-1] for p, h in self._history.items() if h and h[-1] is not None}

    def swapped(self, persona: str, job_id: str | None) -> None:
        """The persona now runs with `job_id` (None: its base model)."""
        with self._lock:
            history = self._history.setdefault(persona, [None])
            if history[-1] != job_id:
                history.append(job_id)
                del history[:-HISTORY]
            if job_id is not None:
                self._offered.add(job_id)

    def rolled_back(self, persona: str) -> str | None:
        """One step back; returns what is in use now."""
        with self._lock:
            history = self._history.setdefault(persona, [None])
            history.pop()
            if not history:
                history.append(None)
            return history[-1]

    def offered(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._offered

    def mark_offered(self, job_id: str) -> None:
        with self._lock:
            self._offered.add(job_id)

    def promote_by_hand(self, job_id: str) -> None:
        with self._lock:
            self._by_hand.add(job_id)
            self._offered.add(job_id)

    def by_hand(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._by_hand
