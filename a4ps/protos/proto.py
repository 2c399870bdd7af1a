"""Live persona objects: editable state (prompt, model, sampling) plus counters and status.

The codex is the source of a persona; the living image keeps only what was changed live
(`update_proto`) as overrides on top of the codex version they were made against, so codex edits
and a change of model provider always take effect:
- an override is dropped (with a log line) when the codex version changed, or when the codex value
  it replaced changed (the codex was edited under it);
- a `model` override belongs to the provider it was made for; under another provider the
  persona's model for that provider (from the codex) is used and the override waits.
Counters and last dissonance are statistics, kept across restarts whatever the codex says.

A persona may run with a LoRA adapter (a4ps/adapters): `set_adapter` makes `model` the variant that
carries it and `adapter` names it; `clear_adapter` returns to the base. That is not a live edit (the
adapter organ keeps the choice in the image and sets it again at start), and while an adapter is in
use the model cannot be edited by hand (roll the adapter back first).
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from a4ps.config.schema import Codex, Persona

log = logging.getLogger(__name__)

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
    adapter: str | None = None  # the LoRA adapter (job id) `model` carries, None: the base model
    counters: dict[str, int] = field(default_factory=lambda: {"calls": 0, "tokens": 0, "tasks": 0})

    @classmethod
    def from_persona(cls, persona: Persona, provider: str, one_model: str | None = None) -> "Proto":
        return cls(
            name=persona.name,
            role=persona.role,
            system_prompt=persona.system_prompt,
            model=one_model or persona.models[provider],
            temperature=persona.temperature,
            top_p=persona.top_p,
            max_tokens=persona.max_tokens,
        )

    def as_map(self) -> dict[str, Any]:
        return asdict(self)


class ProtoManager:
    """Holds the protos; every change goes through here so listeners (the UI) hear about it."""

    def __init__(self, protos: dict[str, Proto], on_change: Callable[[Proto], None] | None = None, *,
                 codex: Codex | None = None, provider: str = "", one_model: str | None = None,
                 overrides: dict[str, dict[str, dict[str, Any]]] | None = None):
        self._protos = protos
        self._lock = threading.RLock()
        self._on_change = on_change
        self._codex_version = codex.version if codex is not None else None
        self._personas = {p.name: p for p in codex.persona} if codex is not None else {}
        self._provider = provider
        self._one_model = one_model
        self._overrides = overrides or {}  # persona -> key ("temperature", "model@ollama") -> record
        self._bases: dict[str, str] = {}  # persona -> its model without the adapter it now runs with

    @classmethod
    def for_models(cls, codex: Codex, models: Any, saved: Any = None,
                   on_change: Callable[[Proto], None] | None = None) -> "ProtoManager":
        """`from_codex` for the provider a ModelManager runs, with the one model it really runs where
        it runs one for everybody (embedded): every organ that builds personas shows the same names."""
        return cls.from_codex(codex, models.provider_name, saved, on_change, one_model=models.one_model)

    @classmethod
    def from_codex(cls, codex: Codex, provider: str, saved: Any = None,
                   on_change: Callable[[Proto], None] | None = None, *, one_model: str | None = None) -> "ProtoManager":
        """Personas from the codex for `provider`, with the live edits and counters of `saved`
        (what `export` returned, from the image) that still apply; see the module docstring.
        `one_model`: the model a provider that runs one for everybody (embedded) really runs, shown
        and asked for instead of the codex's per-persona names."""
        protos = {persona.name: Proto.from_persona(persona, provider, one_model) for persona in codex.persona}
        overrides: dict[str, dict[str, dict[str, Any]]] = {}
        if isinstance(saved, dict) and isinstance(saved.get("overrides"), dict):
            overrides = _still_valid(codex, saved, provider)
            for name, stats in (saved.get("stats") or {}).items():
                if name in protos and isinstance(stats, dict):
                    protos[name].counters.update(stats.get("counters") or {})
                    protos[name].last_dissonance = stats.get("last_dissonance")
        elif isinstance(saved, dict) and saved:  # an image from before overrides: keep the counters only
            for name, old in saved.items():
                if name in protos and isinstance(getattr(old, "counters", None), dict):
                    protos[name].counters.update(old.counters)
            log.info("living image from an older format: persona settings come from codex version %d",
                     codex.version)
        manager = cls(protos, on_change, codex=codex, provider=provider, one_model=one_model, overrides=overrides)
        for name, records in overrides.items():
            for key, record in records.items():
                if _applies(key, provider):
                    setattr(protos[name], _field_of(key), record["value"])
        return manager

    def adopt_codex(self, codex: Codex) -> None:
        """Personas from a new codex version, live (call between tasks, never mid-answer): live
        edits made against the old version are dropped (the codex wins), counters are kept."""
        with self._lock:
            fresh = ProtoManager.from_codex(codex, self._provider, self.export(), one_model=self._one_model)
            for name, proto in fresh._protos.items():
                if name in self._protos:
                    proto.status = self._protos[name].status
                    old = self._protos[name]
                    if old.adapter is not None:  # the adapter stays: its variant is kept, over the new base
                        self._bases[name] = proto.model
                        proto.model, proto.adapter = old.model, old.adapter
            self._protos.clear()
            self._protos.update(fresh._protos)
            self._codex_version, self._personas, self._overrides = fresh._codex_version, fresh._personas, fresh._overrides
            protos = list(self._protos.values())
        for proto in protos:
            self._changed(proto)

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

    def export(self) -> dict[str, Any]:
        """Plain data for the image: the live edits (against this codex version) and the counters."""
        with self._lock:
            return {"codex_version": self._codex_version,
                    "overrides": copy.deepcopy(self._overrides),
                    "stats": {name: {"counters": dict(p.counters), "last_dissonance": p.last_dissonance}
                              for name, p in self._protos.items()}}

    def overrides(self) -> dict[str, dict[str, Any]]:
        """The live edits in force, persona -> field -> value (for display and tests)."""
        with self._lock:
            return {name: {_field_of(key): record["value"] for key, record in records.items()
                           if _applies(key, self._provider)}
                    for name, records in self._overrides.items()}

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
            if "model" in clean and proto.adapter is not None:
                raise ProtoEditError(f"{name} runs with the LoRA adapter {proto.adapter}; roll it back "
                                     "(rollback_adapter) before changing its model")
            for key, value in clean.items():
                setattr(proto, key, value)
                self._record_override(name, key, value)
        self._changed(proto)
        return proto

    def _record_override(self, name: str, field_name: str, value: Any) -> None:
        """Remember a live edit with the codex value it replaces; an edit back to the codex clears it."""
        persona = self._personas.get(name)
        if persona is None:
            return
        base = _codex_value(persona, field_name, self._provider)
        key = f"model@{self._provider}" if field_name == "model" else field_name
        records = self._overrides.setdefault(name, {})
        if value == base:
            records.pop(key, None)
        else:
            records[key] = {"value": value, "base": base}
        if not records:
            del self._overrides[name]

    def set_adapter(self, name: str, adapter: str, model: str) -> Proto:
        """From the next call on, the persona speaks with `model` (its base plus `adapter`)."""
        with self._lock:
            proto = self.get(name)
            if proto.adapter is None:
                self._bases[name] = proto.model
            proto.model, proto.adapter = model, adapter
        self._changed(proto)
        return proto

    def clear_adapter(self, name: str) -> Proto:
        """From the next call on, the persona speaks with its base model again."""
        with self._lock:
            proto = self.get(name)
            if proto.adapter is not None:
                proto.model, proto.adapter = self._bases.pop(name, proto.model), None
        self._changed(proto)
        return proto

    def base_model(self, name: str) -> str:
        """The persona's model without any adapter (what an adapter is made over)."""
        with self._lock:
            proto = self.get(name)
            return self._bases.get(name, proto.model) if proto.adapter is not None else proto.model

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


def _field_of(key: str) -> str:
    return key.split("@", 1)[0]


def _applies(key: str, provider: str) -> bool:
    """`model@ollama` applies only under ollama; other fields apply under any provider."""
    return "@" not in key or key.split("@", 1)[1] == provider


def _codex_value(persona: Persona, field_name: str, provider: str) -> Any:
    if field_name == "model":
        return persona.models.get(provider)
    return getattr(persona, field_name)


def _still_valid(codex: Codex, saved: dict[str, Any], provider: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The saved overrides that still apply to this codex; each dropped one gets a log line."""
    overrides = saved["overrides"]
    edits = [f"{name}.{key}" for name, records in overrides.items() for key in records]
    if saved.get("codex_version") != codex.version:
        if edits:
            log.warning("codex version changed (%s -> %s): live edits dropped, the codex wins: %s",
                        saved.get("codex_version"), codex.version, ", ".join(sorted(edits)))
        return {}
    personas = {p.name: p for p in codex.persona}
    kept: dict[str, dict[str, dict[str, Any]]] = {}
    for name, records in overrides.items():
        for key, record in records.items():
            field_name, provider_of_edit = _field_of(key), key.partition("@")[2] or provider
            if name not in personas or field_name not in EDITABLE:
                log.warning("live edit %s.%s dropped: no such persona or field in the codex", name, key)
                continue
            base = _codex_value(personas[name], field_name, provider_of_edit)
            if record.get("base") != base:
                log.warning("live edit %s.%s dropped: the codex changed under it (%r -> %r), the codex wins",
                            name, key, record.get("base"), base)
                continue
            if not _applies(key, provider):
                log.info("live edit %s.%s kept for %s; under %s the codex model %r is used",
                         name, key, provider_of_edit, provider, personas[name].models.get(provider))
            kept.setdefault(name, {})[key] = dict(record)
    return kept
