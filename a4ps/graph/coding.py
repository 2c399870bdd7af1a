"""ALFRED's final answer to a task that asks for code: the code written as JSON, checked in the
sandbox, mended once with what failed (a4ps.forge.code_check), then his few words on it below it.

Why: the code a person is given is read by code before it is given (checked, run), so it is asked as
JSON, not cut out of prose; and a final answer's code that was never run was measured to be worse than
one plain call's. The checks are ALFRED's own: calls on small inputs with the results the task's words
fix, so a function that returns a list where the task asks for a string fails one.
"""

from __future__ import annotations

import json
import logging
import threading

from a4ps.config.schema import Prompts
from a4ps.config.templates import render
from a4ps.events import EventBus
from a4ps.forge.code_check import CHECKS, CODE, CodeCheck, better
from a4ps.graph.conversation import Conversation
from a4ps.graph.state import DialogueState, Workshop
from a4ps.graph.voice import TaskCancelled
from a4ps.models import ModelError
from a4ps.models.structured import prose_layout

log = logging.getLogger(__name__)

CODE_TOKENS = 900  # 60 lines of code as JSON
NODE = "alfred_synthesize"


def final_code(talk: Conversation, workshop: Workshop, state: DialogueState, cancel: threading.Event, *,
               turn: int, prompts: Prompts, fixes: int) -> tuple[list[dict], CodeCheck] | None:
    """(the messages ALFRED saw, the version of the code to give), or None when he gave no usable
    JSON at all. He writes the code, then its checks (each a JSON answer continuing the conversation);
    the version given is the best one checked: the one that passes, else the one that fails least. A
    Stop raises TaskCancelled."""
    seen = talk.messages(state, {"role": "user", "content": talk.fill(prompts.final_code, state)})
    best: CodeCheck | None = None
    for attempt in range(fixes + 1):
        try:
            lines = _ask(talk, state, seen, CODE, turn, cancel)["lines"]
            seen += [{"role": "assistant", "content": json.dumps({"lines": lines})},
                     {"role": "user", "content": talk.fill(prompts.code_checks, state)}]
            checks = _ask(talk, state, seen, CHECKS, turn, cancel)["checks"]
        except ModelError as exc:  # (a Stop is TaskCancelled, no ModelError: it goes through)
            log.warning("task %s: ALFRED gave no usable code (%s)", state["task_id"], exc)
            break
        seen = [*seen, {"role": "assistant", "content": json.dumps({"checks": checks})}]
        check = workshop.check_code(lines, checks, cancel=cancel)
        if check.cancelled or cancel.is_set():
            raise TaskCancelled()
        best = check if best is None else better(best, check)
        log.info("task %s: ALFRED's code (try %d): %s", state["task_id"], attempt + 1, check.summary)
        if check.ok or check.sandbox_fault or attempt == fixes:
            break
        seen.append({"role": "user", "content": talk.fill(prompts.code_fix, state, failure=check.summary)})
    return (seen, best) if best is not None else None


def _ask(talk: Conversation, state: DialogueState, seen: list[dict], schema: dict, turn: int,
         cancel: threading.Event) -> dict:
    return talk.voices.decide("ALFRED", seen, schema, task_id=state["task_id"], node=NODE, turn=turn, cancel=cancel,
                              max_tokens=CODE_TOKENS, code=True)


def code_answer(talk: Conversation, workshop: Workshop, bus: EventBus, state: DialogueState,
                cancel: threading.Event, *, turn: int, prompts: Prompts, fixes: int, max_tokens: int) -> str | None:
    """The final answer: the code and what checking it found (a failed check is said, not hidden), then
    ALFRED's few sentences on it (streamed; below the code, so an example call he writes comes after
    the definition). None when he gave no code as JSON: the answer is then written as prose."""
    coded = final_code(talk, workshop, state, cancel, turn=turn, prompts=prompts, fixes=fixes)
    if coded is None:
        return None
    seen, check = coded
    said = check.summary[:1].upper() + check.summary[1:] + "."
    instruction = talk.fill(prompts.code_answer, state, code=check.code, check=check.summary)
    block = render(prompts.code_block, code=check.code, check=said) + "\n\n"
    bus.publish("token", task_id=state["task_id"], persona="ALFRED", node=NODE, turn=turn, text=block)
    prose = (talk.voices.speak("ALFRED", [*seen, {"role": "user", "content": instruction}], task_id=state["task_id"],
                               node=NODE, turn=turn, cancel=cancel, max_tokens=max_tokens,
                               layout=prose_layout()) or "").strip()
    answer = (block + prose).strip()
    data = {"code_check": {"ok": check.ok, "passed": check.passed, "checks": list(check.checks),
                           "failures": list(check.failures), "repairs": list(check.repairs)}}
    talk.voices.utterance("ALFRED", task_id=state["task_id"], node=NODE, turn=turn, text=answer, data=data)
    return answer
