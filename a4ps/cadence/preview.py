"""The impact preview: recent tasks replayed under the current and the proposed codex, judged blind.

Why: a person approving an amendment should see what it does, not only what ALFRED expects. Each
replay is a whole Socratic dialogue on a private bus (nothing reaches the UI's log) without tools;
ALFRED then sees the two answers as "1" and "2", in both orders, so a preference for a position
cancels out. Per task: wins, ties and losses of the proposed codex.
"""

from __future__ import annotations

import threading
from typing import Any

from a4ps.config.schema import STEWARD, Codex, Settings
from a4ps.config.templates import render
from a4ps.events import EventBus
from a4ps.graph import SocraticGraph
from a4ps.graph.voice import Voices
from a4ps.models import ModelManager
from a4ps.protos import ProtoManager

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"better": {"type": "string", "enum": ["1", "2", "tie"]}},
    "required": ["better"],
    "additionalProperties": False,
}


class ImpactPreview:
    """Replays and judges; `run` returns {"tasks": [...], "wins", "ties", "losses"}."""

    def __init__(self, settings: Settings, models: ModelManager, judge: Voices):
        self._settings, self._models, self._judge = settings, models, judge

    def _answer(self, codex: Codex, task_id: str, text: str, cancel: threading.Event) -> str:
        bus = EventBus()  # private: a replay is not a task the person follows
        protos = ProtoManager.from_codex(codex, self._models.provider_name)
        voices = Voices(self._models, protos, bus, self._settings.models.max_tokens,
                        self._settings.models.repeat_penalty)
        graph = SocraticGraph(voices, codex, self._settings.graph.model_copy(update={"tools": False}), bus)
        return graph.run(task_id, text, cancel=cancel).get("answer", "")

    def _prefers(self, codex: Codex, task: str, first: str, second: str, task_id: str, order: int,
                 cancel: threading.Event) -> str:
        system = next(p["system_prompt"] for p in self._judge.personas() if p["name"] == STEWARD)
        prompt = render(codex.prompts.judge, task=task, first=first, second=second)
        data = self._judge.decide(STEWARD, [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                                  JUDGE_SCHEMA, task_id=task_id, node="preview_judge", turn=order, cancel=cancel,
                                  max_tokens=16)
        return data["better"]

    def run(self, current: Codex, proposed: Codex, tasks: list[dict[str, Any]], task_id: str,
            cancel: threading.Event) -> dict[str, Any]:
        results = []
        for n, task in enumerate(tasks, 1):
            now = self._answer(current, f"{task_id}-preview{n}-current", task["task"], cancel)
            then = self._answer(proposed, f"{task_id}-preview{n}-proposed", task["task"], cancel)
            # order 1: current is "1"; order 2: proposed is "1"
            verdicts = [self._prefers(current, task["task"], now, then, task_id, 2 * n - 1, cancel),
                        self._prefers(current, task["task"], then, now, task_id, 2 * n, cancel)]
            proposed_won = [verdicts[0] == "2", verdicts[1] == "1"]
            current_won = [verdicts[0] == "1", verdicts[1] == "2"]
            results.append({"task_id": task["task_id"], "task": task["task"], "current_answer": now,
                            "proposed_answer": then, "verdicts": verdicts, "wins": sum(proposed_won),
                            "losses": sum(current_won), "ties": verdicts.count("tie")})
        return {"tasks": results, "wins": sum(r["wins"] for r in results),
                "ties": sum(r["ties"] for r in results), "losses": sum(r["losses"] for r in results)}


def preview_text(preview: dict[str, Any]) -> str:
    if not preview["tasks"]:
        return "Impact preview: no recent task to replay."
    lines = [f"Impact preview ({len(preview['tasks'])} task(s) replayed, judged blind in both orders): "
             f"the proposed codex won {preview['wins']}, tied {preview['ties']}, lost {preview['losses']}."]
    lines += [f"- {r['task'][:100]}: wins {r['wins']}, ties {r['ties']}, losses {r['losses']}" for r in preview["tasks"]]
    return "\n".join(lines)
