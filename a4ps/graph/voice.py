"""A persona speaking: one model call with its live proto state, streamed to the bus as it happens."""

from __future__ import annotations

import threading
from typing import Any

from a4ps.events import EventBus
from a4ps.models import ModelManager
from a4ps.models.types import Sampling
from a4ps.protos import ProtoManager


class TaskCancelled(Exception):
    """The running task was cancelled (by the user or by shutdown) while a persona was speaking."""


class Voices:
    """Turns (persona, prompt, schema) into a validated answer, with status, tokens and counters."""

    def __init__(self, models: ModelManager, protos: ProtoManager, bus: EventBus, max_tokens: int,
                 repeat_penalty: float = 1.15):
        self._models = models
        self._protos = protos
        self._bus = bus
        self._max_tokens = max_tokens
        self._repeat_penalty = repeat_penalty

    def speak(self, persona: str, prompt: str, schema: dict, *, shown_field: str, task_id: str,
              node: str, turn: int, cancel: threading.Event) -> dict[str, Any]:
        proto = self._protos.get(persona)  # read live state at call time: surgery applies next turn
        messages = [{"role": "system", "content": proto.system_prompt}, {"role": "user", "content": prompt}]
        sampling = Sampling(proto.temperature, proto.top_p, min(proto.max_tokens, self._max_tokens), self._repeat_penalty)
        started = False

        def on_token(text: str) -> None:
            nonlocal started
            if cancel.is_set():
                raise TaskCancelled()
            if not started:
                started = True
                self._protos.set_status(persona, "speaking")
            self._bus.publish("token", task_id=task_id, persona=persona, node=node, turn=turn, text=text)

        def on_retry(attempt: int, error: str) -> None:
            self._bus.publish("token", task_id=task_id, persona=persona, node=node, turn=turn,
                              text=f"\n[answer rejected: {error}; asking again]\n")

        self._protos.set_status(persona, "thinking")
        try:
            if cancel.is_set():
                raise TaskCancelled()
            result = self._models.chat(messages, model=proto.model, schema=schema, sampling=sampling,
                                       on_token=on_token, stream_field=shown_field, on_retry=on_retry)
        finally:
            self._protos.set_status(persona, "idle")
        self._protos.record_call(persona, result.completion_tokens)
        data = result.data or {}
        self._bus.publish("utterance", task_id=task_id, persona=persona, node=node, turn=turn,
                          text=str(data.get(shown_field, "")), data=data)
        return data

    def record_dissonance(self, persona: str, value: float) -> None:
        self._protos.record_dissonance(persona, value)
