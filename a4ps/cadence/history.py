"""The legislative history: the dialogues a codex amendment answers to, and the performance record.

Why: ALFRED proposes from evidence, and the person deciding must be able to read the same evidence.
Every finished dialogue is kept (bounded) with each turn and its dissonance in
`<data_dir>/cadence/record.json`; an inquiry takes the most dissonant recent ones.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from a4ps.atomicfile import read_json, write_json

log = logging.getLogger(__name__)

KEEP_DIALOGUES = 40
HISTORY_DIALOGUES = 4
PROMPT_ENTRY_CHARS = 700


class LegislativeRecord:
    """Finished dialogues with their turns and dissonance, on disk."""

    def __init__(self, path: Path):
        self._path = path
        self._lock = threading.Lock()
        try:
            saved = read_json(path) or []
        except ValueError as exc:
            log.error("%s; the legislative record starts empty", exc)
            saved = []
        self._dialogues: list[dict[str, Any]] = [d for d in saved if isinstance(d, dict) and "task" in d]

    def add(self, task: Any, final: dict[str, Any]) -> None:
        entry = {"task_id": task.task_id, "task": task.text, "source": task.source, "at": time.time(),
                 "dissonance": [round(float(v), 3) for v in final.get("dissonance", [])],
                 "dialogue": [{"persona": d.get("persona"), "node": d.get("node"), "turn": d.get("turn"),
                               "text": d.get("text", "")} for d in final.get("dialogue", [])],
                 "answer": final.get("answer", "")}
        with self._lock:
            self._dialogues = [*self._dialogues, entry][-KEEP_DIALOGUES:]
            try:
                write_json(self._path, self._dialogues)
            except OSError as exc:
                log.error("the legislative record could not be saved: %s", exc)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._dialogues[-limit:])

    def dissonant(self, limit: int = HISTORY_DIALOGUES) -> list[dict[str, Any]]:
        """The most dissonant of the recent dialogues (highest peak first)."""
        with self._lock:
            ranked = sorted(self._dialogues, key=lambda d: -max(d["dissonance"] or [0.0]))
        return ranked[:limit]

    def performance(self, threshold: float) -> dict[str, Any]:
        with self._lock:
            dialogues = list(self._dialogues)
        values = [v for d in dialogues for v in d["dissonance"]]
        return {"dialogues": len(dialogues), "turns_judged": len(values),
                "mean_dissonance": round(sum(values) / len(values), 3) if values else None,
                "high_dissonance_dialogues": sum(1 for d in dialogues if d["dissonance"]
                                                 and all(v > threshold for v in d["dissonance"]))}


def dialogue_entry(d: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(d["at"]))
    scores = ", ".join(f"{v:.2f}" for v in d["dissonance"]) or "none"
    lines = [f"Dialogue on task {d['task_id']} ({d['source']}, {when}): {d['task']}",
             f"Dissonance per turn: {scores}"]
    lines += [f"{t['persona']} ({t['node']}, turn {t['turn']}): {t['text']}" for t in d["dialogue"]]
    lines.append(f"Final answer: {d['answer']}")
    return "\n".join(lines)


def performance_entry(record: dict[str, Any], personas: list[dict[str, Any]], broken_tools: list[str],
                      threshold: float) -> str:
    lines = [f"Performance record: {record['dialogues']} recent dialogue(s), {record['turns_judged']} turn(s) "
             f"judged, mean dissonance {record['mean_dissonance']}, "
             f"{record['high_dissonance_dialogues']} above {threshold} on every turn."]
    for p in personas:
        counters = p.get("counters") or {}
        lines.append(f"{p['name']}: {counters.get('tasks', 0)} task(s), {counters.get('calls', 0)} call(s), "
                     f"last dissonance {p.get('last_dissonance')}")
    lines.append(f"Failed tools: {', '.join(broken_tools) or 'none'}.")
    lines.append("User complaints: none recorded.")
    return "\n".join(lines)


def prompt_history(entries: list[str], limit_chars: int = PROMPT_ENTRY_CHARS) -> str:
    """The history shortened for the model's context (the person gets it whole)."""
    return "\n\n".join(e if len(e) <= limit_chars else e[:limit_chars] + " …" for e in entries)
