"""BRICK computes a task's number with a program run in the sandbox, mending it once it fails.

Why: a small model working by hand slips on a hundred cases, and three hand-worked numbers that all
differ mean hand working has failed twice over; the same model writes the loop that does it exactly.
A program of his that fails is shown him with why (the sandbox's error) and he writes it again: a
1.5B model calls a helper it never defined, or loops too slowly, far more often than it writes the
same broken program twice. The program itself is a4ps.forge.program's (JSON lines, run once).
"""

from __future__ import annotations

import json
import logging
import threading

from a4ps.forge.program import PROGRAM
from a4ps.graph.conversation import Conversation
from a4ps.graph.state import DialogueState, Workshop
from a4ps.graph.voice import TaskCancelled
from a4ps.models import ModelError

log = logging.getLogger(__name__)

PROGRAM_TOKENS = 600  # BRICK's program (a4ps.forge.program allows 40 lines)


def compute_number(talk: Conversation, workshop: Workshop, state: DialogueState, cancel: threading.Event, *,
                   node: str, turn: int, instruction: str, fix_template: str,
                   fixes: int) -> tuple[list[dict], str, float] | None:
    """(the messages BRICK saw, the program and its outcome as shown, the number), or None when no
    number came of it within `fixes` mendings (he then works it out by hand). A Stop raises
    TaskCancelled."""
    seen = talk.messages(state, {"role": "user", "content": instruction})
    for attempt in range(fixes + 1):
        try:
            lines = talk.voices.decide("BRICK", seen, PROGRAM, task_id=state["task_id"], node=node, turn=turn,
                                       cancel=cancel, max_tokens=PROGRAM_TOKENS, code=True)["lines"]
        except ModelError as exc:  # (a Stop is TaskCancelled, no ModelError: it goes through)
            log.warning("task %s: BRICK wrote no usable program (%s); he works it out by hand", state["task_id"], exc)
            return None
        outcome = workshop.compute(lines, cancel=cancel)
        if outcome.cancelled or cancel.is_set():
            raise TaskCancelled()
        if outcome.number is not None:
            summary = outcome.summary[:1].upper() + outcome.summary[1:]
            return seen, "```python\n" + "\n".join(lines) + "\n```\n" + summary + ".", outcome.number
        log.info("task %s: BRICK's program (try %d) gave no number (%s)", state["task_id"], attempt + 1,
                 outcome.summary)
        if not outcome.mendable:
            break
        seen = [*seen, {"role": "assistant", "content": json.dumps({"lines": lines})},
                {"role": "user", "content": talk.fill(fix_template, state, failure=outcome.summary)}]
    log.info("task %s: no number from BRICK's program; he works it out by hand", state["task_id"])
    return None
