"""How the personas talk within one task: the codex's prompts filled from the state, prose spoken in
the shared conversation, and short constrained follow-ups on an answer just given.

Why one place: every call only appends to the same conversation (the society's system message, then
every instruction and answer in order), so a local model re-reads nothing it has already processed
(llama.cpp reuses the longest cached prefix). The nodes say what is asked; this says how it is put.
"""

from __future__ import annotations

import threading
from typing import Any

from a4ps.config.schema import Codex, Graph
from a4ps.config.templates import render
from a4ps.graph import results as numbers, schemas
from a4ps.graph.state import DialogueState, tool_results_text, window
from a4ps.graph.voice import Voices


class Conversation:
    """The shared conversation of one task's personas (stateless: everything it reads is the state)."""

    def __init__(self, voices: Voices, codex: Codex, config: Graph):
        self.voices = voices
        self._codex = codex
        self._prompts = codex.prompts
        self._config = config

    def society(self) -> str:
        """The system message every call starts with: the personas and the principles, from the codex."""
        personas = "\n".join(f"- {p['name']}: {p['role']} {p['system_prompt']}" for p in self.voices.personas())
        principles = "\n".join(f"- {p.text}" for p in self._codex.principle) or "(none)"
        return render(self._prompts.society, personas=personas, principles=principles)

    def fill(self, template: str, state: DialogueState, **extra: Any) -> str:
        values = {"task": state.get("task", ""), "plan": state.get("plan", ""),
                  "memories": state.get("memories") or "(none)", "turn": state.get("turn", 0),
                  "tool_results": tool_results_text(state.get("tool_results", [])),
                  "results": numbers.results_text(state.get("results", [])), **extra}
        return render(template, **values)

    def messages(self, state: DialogueState, *tail: dict) -> list[dict]:
        transcript = window(state.get("transcript", []), self._config.transcript_chars)
        return [{"role": "system", "content": self.society()}, *transcript, *tail]

    def speak(self, persona: str, node: str, state: DialogueState, instruction: str, turn: int,
              max_tokens: int, cancel: threading.Event, layout: str | None = None,
              before: list[dict] | None = None, whole: bool = False) -> tuple[list[dict], str]:
        """The persona answers the instruction in prose (after `before`, messages not yet in the
        conversation); returns (the messages it saw, its answer). `whole`: see Voices.speak."""
        messages = self.messages(state, *(before or []), {"role": "user", "content": instruction})
        text = self.voices.speak(persona, messages, task_id=state["task_id"], node=node, turn=turn,
                                 cancel=cancel, max_tokens=max_tokens, layout=layout, whole=whole)
        return messages, text or "(no answer)"

    def decide(self, persona: str, node: str, state: DialogueState, seen: list[dict], answer: str,
               question: str, schema: dict, turn: int, cancel: threading.Event) -> dict:
        """A constrained follow-up question on the answer just given (it continues the cached prompt)."""
        messages = [*seen, {"role": "assistant", "content": answer}, {"role": "user", "content": question}]
        return self.voices.decide(persona, messages, schema, task_id=state["task_id"], node=node, turn=turn,
                                  cancel=cancel)

    def own_number(self, persona: str, node: str, state: DialogueState, seen: list[dict], answer: str,
                   turn: int, cancel: threading.Event, template: str | None = None) -> tuple[str, float]:
        """The number the persona's own answer reached, asked right after it (its prompt is cached);
        returns (the question, the number). `template`: another wording than the codex's own_result."""
        question = self.fill(template or self._prompts.own_result, state, persona=persona)
        data = self.decide(persona, node, state, seen, answer, question, schemas.RESULT, turn, cancel)
        return question, data["result"]

    @staticmethod
    def exchange(instruction: str, answer: str) -> list[dict]:
        return [{"role": "user", "content": instruction}, {"role": "assistant", "content": answer}]
