"""ALFRED judges one remembered dialogue: three scores, an overall grade, and the voice that drove it.

Why: only good dialogues should teach a persona, and "good" is read by code, so the verdict is
schema-constrained JSON validated by the model layer (a4ps/models: an invalid answer is asked again
with the validation error, up to `models.json_retries`, then a StructuredOutputError). The personas'
names come from the codex: the steward judges, the driver is one of the two debating voices.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from a4ps.config.schema import ANALYST, EMPATH, STEWARD, Codex
from a4ps.config.templates import render
from a4ps.graph.voice import Voices
from a4ps.memory.records import KIND_UTTERANCE, Episode, MemoryChunk

DEBATERS = (ANALYST, EMPATH)
SCORES = ("logical_rigour", "fit_to_person", "task_efficacy")
TURN_CHARS = 900      # each turn as the judge reads it (the golden sample keeps it whole)
ANSWER_CHARS = 1500
JUDGE_TOKENS = 220    # the JSON with a `why` of 300 characters closes well within it


def verdict_schema() -> dict[str, Any]:
    score = {"type": "integer", "minimum": 1, "maximum": 5}
    return {
        "type": "object",
        "properties": {**{name: dict(score) for name in SCORES},
                       "overall": {"type": "number", "minimum": 0, "maximum": 1},
                       "driver": {"type": "string", "enum": list(DEBATERS)},
                       "why": {"type": "string", "minLength": 8, "maxLength": 300}},
        "required": [*SCORES, "overall", "driver", "why"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Verdict:
    scores: dict[str, float]  # the three 1-5 scores and overall (0..1)
    driver: str
    why: str
    judge_model: str


def turns_of(episode: Episode, persona: str) -> list[MemoryChunk]:
    """The persona's own turns: its utterances, without tool outcomes (the sandbox's words, which the
    graph reports under the analyst's name on nodes named tool_*)."""
    return [c for c in episode.chunks
            if c.kind == KIND_UTTERANCE and c.persona == persona and not c.node.startswith("tool") and c.text.strip()]


def _short(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " …"


def dialogue_text(episode: Episode) -> str:
    lines = [f"{c.persona} (turn {c.turn}): {_short(c.text, TURN_CHARS)}" for c in episode.chunks
             if c.kind == KIND_UTTERANCE and c.persona != STEWARD and c.text.strip()]
    return "\n\n".join(lines) or "(no turns were recorded)"


class EpisodeJudge:
    """Asks the steward for a Verdict on an episode (codex prompt `curate`)."""

    def __init__(self, voices: Voices, codex: Codex, judge_model: Callable[[], str]):
        self._voices, self._codex, self._judge_model = voices, codex, judge_model

    def judge(self, episode: Episode, cancel: threading.Event, turn: int = 1) -> Verdict:
        """Raises TaskCancelled when `cancel` is set, ModelError (StructuredOutputError) when no valid
        verdict came after the re-asks."""
        system = next(p["system_prompt"] for p in self._voices.personas() if p["name"] == STEWARD)
        prompt = render(self._codex.prompts.curate, task=episode.task_text.strip(), dialogue=dialogue_text(episode),
                        answer=_short(episode.summary, ANSWER_CHARS), voices=f"{ANALYST} or {EMPATH}")
        data = self._voices.decide(STEWARD, [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                                   verdict_schema(), task_id="curator", node="curate", turn=turn, cancel=cancel,
                                   max_tokens=JUDGE_TOKENS)
        scores = {name: int(data[name]) for name in SCORES}
        scores["overall"] = round(float(data["overall"]), 3)
        return Verdict(scores, data["driver"], " ".join(data["why"].split()), self._judge_model())
