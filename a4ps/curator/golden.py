"""The golden datasets: chat-format samples, one JSONL per persona under `<data_dir>/golden/`.

Why: a fine-tune of a persona learns from the dialogues in which that persona drove a good outcome.
Each line is `{"messages": [system, user, assistant], "provenance": {...}}`: the persona's own
system prompt, the person's task, the persona's turn(s); the provenance says where it came from
(task, episode, scores, judge model, codex version, times, why it is golden). An episode is held at
most once (an index by episode id, rebuilt from the files at start); a removal rewrites the file
atomically, an addition appends one whole line (a4ps/curator/lines.py).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from a4ps.curator.lines import LinesRead, append_lines, read_lines, rewrite_lines

FOLDER = "golden"


def chat_sample(system: str, task: str, answer: str) -> dict[str, list[dict[str, str]]]:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": task},
                         {"role": "assistant", "content": answer}]}


def file_name(persona: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", persona) + ".jsonl"


class GoldenSet:
    """The golden lines of every persona; thread-safe."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._holder: dict[str, str] = {}  # episode id -> the persona whose file holds it
        self.torn_lines = 0
        for path in sorted(folder.glob("*.jsonl")):
            read = read_lines(path)
            self.torn_lines += int(read.torn_tail) + read.bad_lines
            for record in read.records:
                provenance = record.get("provenance") or {}
                if isinstance(provenance.get("episode_id"), str) and isinstance(provenance.get("persona"), str):
                    self._holder[provenance["episode_id"]] = provenance["persona"]

    def path(self, persona: str) -> Path:
        return self.folder / file_name(persona)

    def holder(self, episode_id: str) -> str | None:
        with self._lock:
            return self._holder.get(episode_id)

    def add(self, persona: str, sample: dict[str, Any], provenance: dict[str, Any]) -> bool:
        """Append the episode's sample to the persona's file; False when it is held already."""
        with self._lock:
            if provenance["episode_id"] in self._holder:
                return False
            append_lines(self.path(persona), [{**sample, "provenance": {**provenance, "persona": persona}}])
            self._holder[provenance["episode_id"]] = persona
            return True

    def remove(self, episode_id: str) -> bool:
        """Drop the episode's lines (the file is rewritten atomically); False when none were held."""
        with self._lock:
            persona = self._holder.get(episode_id)
            if persona is None:
                return False
            path = self.path(persona)
            kept = [r for r in read_lines(path).records if (r.get("provenance") or {}).get("episode_id") != episode_id]
            rewrite_lines(path, kept)
            del self._holder[episode_id]
            return True

    def counts(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for persona in self._holder.values():
                out[persona] = out.get(persona, 0) + 1
            return out

    def read(self, persona: str) -> LinesRead:
        return read_lines(self.path(persona))
