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
        protos = ProtoManager.for_models(codex, self._models)
        voices = Voices(self._models, protos, bus, self._settings.models.max_tokens,
                        self._settings.models.repeat_penalty)
        graph = SocraticGraph(voices, codex, self._settings.graph.model_copy(update={"tools": False}), bus)
        return graph.run(task_id, text, cancel=cancel).get("answer", "")

    def run(self, current: Codex, proposed: Codex, tasks: list[dict[str, Any]], task_id: str,
            cancel: threading.Event) -> dict[str, Any]:
        results = []
        for n, task in enumerate(tasks, 1):
            now = self._answer(current, f"{task_id}-preview{n}-current", task["task"], cancel)
            then = self._answer(proposed, f"{task_id}-preview{n}-proposed", task["task"], cancel)
            verdicts = judge_blind(self._judge, current, task["task"], now, then, task_id=task_id,
                                   turn=2 * n - 1, cancel=cancel)
            results.append({"task_id": task["task_id"], "task": task["task"], "current_answer": now,
                            "proposed_answer": then, "verdicts": verdicts, **tally(verdicts)})
        return {"tasks": results, "wins": sum(r["wins"] for r in results),
                "ties": sum(r["ties"] for r in results), "losses": sum(r["losses"] for r in results)}


def _prefers(judge: Voices, codex: Codex, task: str, first: str, second: str, task_id: str, turn: int,
             cancel: threading.Event, node: str) -> str:
    system = next(p["system_prompt"] for p in judge.personas() if p["name"] == STEWARD)
    prompt = render(codex.prompts.judge, task=task, first=first, second=second)
    data = judge.decide(STEWARD, [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                        JUDGE_SCHEMA, task_id=task_id, node=node, turn=turn, cancel=cancel, max_tokens=16)
    return data["better"]


def judge_blind(judge: Voices, codex: Codex, task: str, old: str, new: str, *, task_id: str, turn: int,
                cancel: threading.Event, node: str = "preview_judge") -> list[str]:
    """ALFRED's two verdicts on `old` against `new`: first with old as "1", then with new as "1" (turns
    `turn` and `turn + 1`), so a preference for a position cancels out. Also the adapter gate's judge."""
    return [_prefers(judge, codex, task, old, new, task_id, turn, cancel, node),
            _prefers(judge, codex, task, new, old, task_id, turn + 1, cancel, node)]


def tally(verdicts: list[str]) -> dict[str, int]:
    """judge_blind's verdicts as wins, losses and ties of the new answer."""
    return {"wins": int(verdicts[0] == "2") + int(verdicts[1] == "1"),
            "losses": int(verdicts[0] == "1") + int(verdicts[1] == "2"), "ties": verdicts.count("tie")}


def preview_text(preview: dict[str, Any]) -> str:
    if not preview["tasks"]:
        return "Impact preview: no recent task to replay."
    lines = [f"Impact preview ({len(preview['tasks'])} task(s) replayed, judged blind in both orders): "
             f"the proposed codex won {preview['wins']}, tied {preview['ties']}, lost {preview['losses']}."]
    lines += [f"- {r['task'][:100]}: wins {r['wins']}, ties {r['ties']}, losses {r['losses']}" for r in preview["tasks"]]
    return "\n".join(lines)
