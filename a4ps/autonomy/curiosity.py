"""A curiosity task: BRICK must call the tool that was just made, then the society discusses the result.

Why: a tool nobody ever called is untested in use. The call is not left to BRICK's judgement inside
the graph (he might not ask for it): he is asked only for the arguments, as schema-constrained
JSON, the tool runs in the sandbox, and the dialogue that follows starts from what it returned.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from a4ps.config.schema import ANALYST, Codex
from a4ps.config.templates import render
from a4ps.graph.voice import Voices

ARGUMENTS_SCHEMA = {
    "type": "object",
    "properties": {"arguments": {"type": "object"}},
    "required": ["arguments"],
    "additionalProperties": False,
}
ARGUMENT_TOKENS = 160


class ToolMissing(Exception):
    """The tool of a curiosity task is gone or no longer passes its tests."""


class CuriosityTrial:
    """Turns a curiosity task into BRICK's tool call and the task text the graph then discusses."""

    def __init__(self, voices: Voices, codex: Codex, workshop: Any):
        self._voices, self._codex, self._workshop = voices, codex, workshop

    def prepare(self, task_id: str, tool_name: str, cancel: threading.Event) -> str:
        """Call the tool once with BRICK's arguments; returns the dialogue's task text."""
        tool = next((t for t in self._workshop.usable_tools() if t["name"] == tool_name), None)
        if tool is None:
            raise ToolMissing(f"no usable tool named {tool_name!r} (removed, or its tests fail)")
        system = next(p["system_prompt"] for p in self._voices.personas() if p["name"] == ANALYST)
        question = render(self._codex.prompts.tool_try, signature=tool["signature"], docstring=tool["docstring"])
        data = self._voices.decide(ANALYST, [{"role": "system", "content": system},
                                             {"role": "user", "content": question}],
                                   ARGUMENTS_SCHEMA, task_id=task_id, node="tool_call", turn=0, cancel=cancel,
                                   max_tokens=ARGUMENT_TOKENS)
        outcome = self._workshop.call(tool_name, data["arguments"])
        self._voices.utterance(ANALYST, task_id=task_id, node="tool_call", turn=0, text=outcome.summary,
                               data={"ok": outcome.ok, "tool": tool_name, "arguments": data["arguments"]})
        result = str(outcome.value)[:500] if outcome.ok else f"an error: {outcome.error[:300]}"
        return render(self._codex.prompts.curiosity, signature=tool["signature"], docstring=tool["docstring"],
                      arguments=json.dumps(data["arguments"], ensure_ascii=False), result=result)
