"""ALFRED sets the society a goal of its own: schema-constrained JSON, never a repeat of a recent one.

Why: an idle society that only waits learns nothing; but a goal is model-written, so code reads it
only as validated JSON, and one that repeats a recent goal is refused and asked for again. A goal's
`kind` is `task` (work for the society) or `reflect` (an inquiry into its own codex, when recent
dissonance or failures point at a prompt or principle); while reflection is closed (a proposal
awaits a decision, an inquiry ran lately) the schema offers only `task`, and the prompt says why.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from a4ps.autonomy.novelty import RepeatFilter
from a4ps.config.schema import STEWARD, Codex
from a4ps.config.templates import render
from a4ps.graph.voice import Voices

log = logging.getLogger(__name__)

TASK, REFLECT = "task", "reflect"
GOAL_TOKENS = 256  # the four fields (670 characters at most) close well within it


def goal_schema(reflect: bool) -> dict:
    """The goal's JSON schema; `kind` may be `reflect` only when reflection is open."""
    return {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": [TASK, REFLECT] if reflect else [TASK]},
            "goal": {"type": "string", "minLength": 12, "maxLength": 300},
            "why": {"type": "string", "minLength": 8, "maxLength": 240},
            "builds_on": {"type": "string", "minLength": 1, "maxLength": 120},
        },
        "required": ["kind", "goal", "why", "builds_on"],
        "additionalProperties": False,
    }


class GoalRefused(Exception):
    """No acceptable goal after every attempt (each one repeated a recent goal)."""


@dataclass(frozen=True)
class Goal:
    goal: str
    why: str
    builds_on: str
    attempts: int
    kind: str = TASK


class GoalWriter:
    """Asks the steward for a goal built on `context()` (recent work, tools, dissonance)."""

    def __init__(self, voices: Voices, codex: Codex, novelty: RepeatFilter,
                 context: Callable[[], dict[str, str]], attempts: int = 3):
        self._voices, self._codex, self._novelty = voices, codex, novelty
        self._context, self._attempts = context, attempts

    def write(self, earlier: list[str], cancel: threading.Event, reflection_closed: str | None = None) -> Goal:
        """A new goal (kind `reflect` only when `reflection_closed` is None: no reason against it);
        raises TaskCancelled when `cancel` is set, GoalRefused after only repeats, ModelError when the
        model fails."""
        context = self._context()
        reflection = "open" if reflection_closed is None else f"closed ({reflection_closed}): set a task"
        schema = goal_schema(reflect=reflection_closed is None)
        refused: list[str] = []
        for attempt in range(1, self._attempts + 1):
            listed = [*earlier[-10:], *refused]
            prompt = render(self._codex.prompts.goal, **context, reflection=reflection,
                            recent_goals="; ".join(f'"{g}"' for g in listed) or "(none yet)")
            system = next(p["system_prompt"] for p in self._voices.personas() if p["name"] == STEWARD)
            data = self._voices.decide(STEWARD, [{"role": "system", "content": system},
                                                 {"role": "user", "content": prompt}],
                                       schema, task_id="motivator", node="goal", turn=attempt,
                                       cancel=cancel, max_tokens=GOAL_TOKENS)
            goal = " ".join(data["goal"].split())
            repeated = self._novelty.repeated(goal, [*earlier, *refused])
            if repeated is None:
                return Goal(goal, " ".join(data["why"].split()), " ".join(data["builds_on"].split()), attempt,
                            data["kind"])
            log.info("motivator: goal %r refused: it repeats %r; asking again", goal[:120], repeated[:120])
            refused.append(goal)
        raise GoalRefused(f"every goal ALFRED wrote repeated a recent one ({'; '.join(refused)[:300]})")
