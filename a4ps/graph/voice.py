"""A persona speaking: one model call with its live proto state, streamed to the bus as it happens.

`speak` streams prose that people read (free text: it is shown and passed on, never parsed);
`decide` asks for a small schema-constrained JSON answer that code acts on.
"""

from __future__ import annotations

import threading
from typing import Any

from a4ps.events import EventBus
from a4ps.models import ModelManager
from a4ps.models.types import CODE_REPEAT_PENALTY, ModelCancelled, Sampling
from a4ps.protos import ProtoManager


class TaskCancelled(Exception):
    """The running task was cancelled (by the user or by shutdown) while a persona was speaking."""



def complete_part(text: str) -> str:
    """A reply cut off by its token limit, up to its last complete line (else its last complete
    sentence, else as it is). Why: others read it and anchor on it; measured, a plan cut off at
    "(C * 9/5) + 3" had BRICK, ROBIN and the answer all convert with + 3."""
    text = text.strip()
    if "\n" in text:
        return text[:text.rindex("\n")].rstrip()
    end = max(text.rfind(mark) for mark in (". ", "! ", "? "))
    return text[:end + 1] if end > 0 else text

class Voices:
    """Turns (persona, conversation) into streamed prose or a validated decision, with status and counters."""

    def __init__(self, models: ModelManager, protos: ProtoManager, bus: EventBus, max_tokens: int,
                 repeat_penalty: float = 1.15):
        self._models = models
        self._protos = protos
        self._bus = bus
        self._max_tokens = max_tokens
        self._repeat_penalty = repeat_penalty

    def personas(self) -> list[dict[str, str]]:
        """Live name, role and system prompt of every persona (surgery applies from the next call)."""
        return [{"name": p["name"], "role": p["role"], "system_prompt": p["system_prompt"]}
                for p in self._protos.snapshot()]

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._models.embed(texts)

    def _sampling(self, persona: str, limit: int | None, decision: bool) -> tuple[str, Sampling]:
        proto = self._protos.get(persona)  # read live state at call time
        tokens = min(proto.max_tokens, self._max_tokens, limit or self._max_tokens)
        temperature = 0.0 if decision else proto.temperature  # a decision is read by code: greedy, repeatable
        return proto.model, Sampling(temperature, proto.top_p, tokens, self._repeat_penalty)

    def speak(self, persona: str, messages: list[dict], *, task_id: str, node: str, turn: int,
              cancel: threading.Event, max_tokens: int | None = None, layout: str | None = None,
              whole: bool = False) -> str:
        """Stream the persona's prose to the bus; returns the whole text. `layout` shapes it (a grammar).
        `whole`: a reply the token limit cut off loses its unfinished tail (see complete_part)."""
        model, sampling = self._sampling(persona, max_tokens, decision=False)
        sampling.layout = layout
        started = False

        def on_token(text: str) -> None:
            nonlocal started
            if cancel.is_set():
                raise TaskCancelled()
            if not started:
                started = True
                self._protos.set_status(persona, "speaking")
            self._bus.publish("token", task_id=task_id, persona=persona, node=node, turn=turn, text=text)

        result = self._call(persona, messages, model, None, sampling, on_token, cancel)
        return complete_part(result.text) if whole and result.truncated else result.text.strip()

    def decide(self, persona: str, messages: list[dict], schema: dict, *, task_id: str, node: str, turn: int,
               cancel: threading.Event, max_tokens: int = 96, code: bool = False) -> dict[str, Any]:
        """A validated JSON decision (not shown as tokens); cancellable on every generated piece.
        `code`: the answer holds code, which gets only a light repeat penalty (CODE_REPEAT_PENALTY)."""
        model, sampling = self._sampling(persona, max_tokens, decision=True)
        if code:
            sampling.repeat_penalty = min(sampling.repeat_penalty, CODE_REPEAT_PENALTY)

        def on_piece(_: str) -> None:
            if cancel.is_set():
                raise TaskCancelled()

        def on_retry(attempt: int, error: str) -> None:
            self._bus.publish("token", task_id=task_id, persona=persona, node=node, turn=turn,
                              text=f"\n[decision rejected: {error}; asking again]\n")

        result = self._call(persona, messages, model, schema, sampling, on_piece, cancel, on_retry)
        return result.data or {}

    def _call(self, persona, messages, model, schema, sampling, on_token, cancel, on_retry=None):
        self._protos.set_status(persona, "thinking")
        try:
            if cancel.is_set():
                raise TaskCancelled()
            sampling.should_stop = cancel.is_set
            result = self._models.chat(messages, model=model, schema=schema, sampling=sampling,
                                       on_token=on_token, on_retry=on_retry)
        except ModelCancelled:
            raise TaskCancelled() from None
        finally:
            self._protos.set_status(persona, "idle")
        if cancel.is_set():
            raise TaskCancelled()
        self._protos.record_call(persona, result.completion_tokens)
        self._bus.publish("model_call", persona=persona, model=model, constrained=schema is not None,
                          prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                          reused_prompt_tokens=result.extra.get("reused_prompt_tokens"),
                          first_token_s=result.extra.get("first_token_s"), seconds=round(result.seconds, 3),
                          attempts=result.attempts)
        return result

    def warm(self, persona: str, messages: list[dict]) -> None:
        """Process a prompt once without showing anything, so its prefix is cached for the next task."""
        model, sampling = self._sampling(persona, 1, decision=True)
        self._models.chat(messages, model=model, sampling=sampling)

    def utterance(self, persona: str, *, task_id: str, node: str, turn: int, text: str, data: dict) -> None:
        self._bus.publish("utterance", task_id=task_id, persona=persona, node=node, turn=turn, text=text, data=data)

    def record_dissonance(self, persona: str, value: float) -> None:
        self._protos.record_dissonance(persona, value)
