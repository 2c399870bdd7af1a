"""Live persona objects: editable state (prompt, model, sampling) plus counters and status."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from a4ps.config.schema import Codex, Persona

EDITABLE = {
    "system_prompt": (str, lambda v: 0 < len(v) <= 20_000, "a non-empty string of at most 20,000 chars"),
    "temperature": (float, lambda v: 0.0 <= v <= 2.0, "a number in [0, 2]"),
    "top_p": (float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "max_tokens": (int, lambda v: 16 <= v <= 4096, "an integer in [16, 4096]"),
    "model": (str, lambda v: 0 < len(v) <= 200, "a non-empty model name"),
}


class ProtoEditError(ValueError):
    """An update_proto change names an unknown field or an invalid value."""


@dataclass
class Proto:
    """One persona as a live object; this is what the image stores and the Inspector edits."""

    name: str
    role: str
    system_prompt: str
    model: str
    temperature: float
    top_p: float
    max_tokens: int
    status: str = "idle"
    last_dissonance: float | None = None
    counters: dict[str, int] = field(default_factory=lambda: {"calls": 0, "tokens": 0, "tasks": 0})

    @classmethod
    def from_persona(cls, persona: Persona, provider: str) -> "Proto":
        return cls(
            name=persona.name,
            role=persona.role,
            system_prompt=persona.system_prompt,
            model=persona.models[provider],
            temperature=persona.temperature,
            top_p=persona.top_p,
            max_tokens=persona.max_tokens,
        )

    def as_map(self) -> dict[str, Any]:
        return asdict(self)


class ProtoManager:
    """Holds the protos; every change goes through here so listeners (the UI) hear about it."""

    def __init__(self, protos: dict[str, Proto], on_change: Callable[[Proto], None] | None = None):
        self._protos = protos
        self._lock = threading.RLock()
        self._on_change = on_change

    @classmethod
    def from_codex(cls, codex: Codex, provider: str, restored: dict[str, Proto] | None = None,
                   on_change: Callable[[Proto], None] | None = None) -> "ProtoManager":
        """Personas from the codex; live state restored from the image wins where present."""
        protos = {}
        for persona in codex.persona:
            previous = (restored or {}).get(persona.name)
            protos[persona.name] = previous if previous is not None else Proto.from_persona(persona, provider)
            protos[persona.name].status = "idle"
        return cls(protos, on_change)

    def set_listener(self, on_change: Callable[[Proto], None]) -> None:
        self._on_change = on_change

    def get(self, name: str) -> Proto:
        with self._lock:
            try:
                return self._protos[name]
            except KeyError:
                raise KeyError(f"no persona named {name!r}") from None

    def names(self) -> list[str]:
        with self._lock:
            return list(self._protos)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [proto.as_map() for proto in self._protos.values()]

    def export(self) -> dict[str, Proto]:
        """A deep copy for the image (so a save never races a live edit)."""
        with self._lock:
            return {name: Proto(**proto.as_map()) for name, proto in self._protos.items()}

    def _changed(self, proto: Proto) -> None:
        if self._on_change is not None:
            self._on_change(proto)

    def update(self, name: str, changes: Any) -> Proto:
        """Cognitive surgery: validate every change first, then apply all of them."""
        if not isinstance(changes, dict) or not changes:
            raise ProtoEditError("changes must be a non-empty map")
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in EDITABLE:
                raise ProtoEditError(f"field {key!r} is not editable (editable: {', '.join(EDITABLE)})")
            kind, check, expected = EDITABLE[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool) or not check(value):
                raise ProtoEditError(f"{key} must be {expected}")
            clean[key] = value
        with self._lock:
            proto = self.get(name)
            for key, value in clean.items():
                setattr(proto, key, value)
        self._changed(proto)
        return proto

    def set_status(self, name: str, status: str) -> None:
        with self._lock:
            proto = self.get(name)
            if proto.status == status:
                return
            proto.status = status
        self._changed(proto)

    def record_call(self, name: str, tokens: int) -> None:
        with self._lock:
            proto = self.get(name)
            proto.counters["calls"] += 1
            proto.counters["tokens"] += tokens

    def record_dissonance(self, name: str, value: float) -> None:
        with self._lock:
            proto = self.get(name)
            proto.last_dissonance = value
        self._changed(proto)

    def record_task(self, names: list[str]) -> None:
        with self._lock:
            for name in names:
                self.get(name).counters["tasks"] += 1
