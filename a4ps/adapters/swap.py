"""The cognitive atomic swap: a persona's model becomes base + adapter between tasks, never mid-answer.

Why between tasks: a dialogue started with one model must end with it (a persona changing voice in the
middle of a task would make its turns, and the judged episode, a mix). So a swap or a rollback is only
*requested* (checked at once: the persona, the job and its adapter file for this provider), and the
task worker applies it before it takes the next task, as it adopts an approved codex. Applying makes
the variant (embedded: the GGUF LoRA over the loaded base, used by that persona's calls only; Ollama:
a new tag FROM the base), points the proto at it, records the choice (in the image) and publishes
`adapter_swapped`; when the adapter cannot be loaded the persona stays on what it had and
`adapter_swap_failed` says why.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from a4ps.adapters.choice import AdapterChoice
from a4ps.adapters.jobs import JobError, check_name, load_job
from a4ps.errors import CodedError
from a4ps.events import EventBus
from a4ps.models import ModelError, ModelManager
from a4ps.models.lora import check_adapter_file
from a4ps.protos import ProtoManager

log = logging.getLogger(__name__)

SWAP, ROLLBACK, RESTORE = "swap", "rollback", "restore"


class SwapError(CodedError):
    """A swap or rollback that cannot be asked for; `code` goes into the error reply."""


@dataclass
class _Pending:
    swap_id: str
    persona: str
    job_id: str | None  # None: the base model
    reason: str
    requested_at: float


class AdapterSwap:
    """Requests (any thread) and their application (the task worker, between tasks)."""

    def __init__(self, root: Path, models: ModelManager, protos: ProtoManager, choice: AdapterChoice,
                 bus: EventBus, save: Callable[[str], Any]):
        self._root, self._models, self._protos, self._choice = root, models, protos, choice
        self._bus, self._save = bus, save
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}  # persona -> the latest request (a newer one replaces it)

    def pending(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {p.persona: {"swap_id": p.swap_id, "job_id": p.job_id, "reason": p.reason}
                    for p in self._pending.values()}

    def request(self, persona: str, job_id: str | None, reason: str = SWAP) -> str:
        """Queue `persona` onto adapter `job_id` (None: the base); returns the swap id."""
        self._check_persona(persona)
        if job_id is not None:
            self.check_usable(persona, job_id)
        item = _Pending(uuid.uuid4().hex[:12], persona, job_id, reason, time.time())
        with self._lock:
            self._pending[persona] = item
        log.info("adapter %s for %s requested (%s); applied before the next task", job_id or "(base model)",
                 persona, reason)
        return item.swap_id

    def rollback(self, persona: str) -> tuple[str, str | None]:
        """Queue the return to the adapter used before (None: the base); (swap id, that adapter)."""
        self._check_persona(persona)
        if self._choice.current(persona) is None:
            raise SwapError("nothing_to_roll_back", f"{persona} runs with its base model: nothing to roll back")
        target = self._choice.previous(persona)
        return self.request(persona, target, ROLLBACK), target

    def restore(self) -> None:
        """At start: the adapters the image says are in use are applied before the first task."""
        for persona, job_id in self._choice.in_use().items():
            if persona in self._protos.names():
                with self._lock:
                    self._pending[persona] = _Pending(uuid.uuid4().hex[:12], persona, job_id, RESTORE, time.time())

    def check_usable(self, persona: str, job_id: str) -> None:
        """SwapError when the job or the file this provider needs is missing or damaged."""
        try:
            job = load_job(self._root, persona, job_id)
            if self._models.provider_name == "embedded":
                check_adapter_file(job.lora_gguf)
            elif not job.peft_files[0].is_file():
                raise ModelError(f"adapter file not found: {job.peft_files[0]}")
        except JobError as exc:
            raise SwapError(exc.code, str(exc)) from None
        except ModelError as exc:
            raise SwapError("damaged_adapter", str(exc)) from None

    def _check_persona(self, persona: str) -> None:
        check_name("persona", persona)
        if persona not in self._protos.names():
            raise SwapError("unknown_persona", f"no persona named {persona!r}")

    def apply_pending(self) -> list[dict[str, Any]]:
        """The task worker's call between tasks: every requested swap, applied; returns the events."""
        with self._lock:
            items, self._pending = list(self._pending.values()), {}
        done = [self._apply(item) for item in items]
        if done:
            self._save("adapter swapped")
        return done

    def _apply(self, item: _Pending) -> dict[str, Any]:
        started = time.perf_counter()
        before = self._protos.get(item.persona).adapter
        try:
            if item.job_id is None:
                self._protos.clear_adapter(item.persona)
                model = self._protos.get(item.persona).model
            else:
                job = load_job(self._root, item.persona, item.job_id)
                model = job.variant_name()
                self._models.make_variant(model, base=self._protos.base_model(item.persona),
                                          lora_gguf=job.lora_gguf, peft_files=job.peft_files)
                self._protos.set_adapter(item.persona, item.job_id, model)
        except (JobError, ModelError) as exc:
            log.error("adapter %s for %s not applied: %s; %s stays on %s", item.job_id, item.persona, exc,
                      item.persona, before or "its base model")
            if item.reason == RESTORE:
                self._choice.swapped(item.persona, before)  # the image must say what really runs
            event = {"swap_id": item.swap_id, "persona": item.persona, "adapter": item.job_id,
                     "reason": item.reason, "error": str(exc), "current": before}
            self._bus.publish("adapter_swap_failed", **event)
            return {"topic": "adapter_swap_failed", **event}
        if item.reason == ROLLBACK:
            self._choice.rolled_back(item.persona)
        else:
            self._choice.swapped(item.persona, item.job_id)
        event = {"swap_id": item.swap_id, "persona": item.persona, "adapter": item.job_id, "previous": before,
                 "model": model, "reason": item.reason, "requested_at": item.requested_at,
                 "seconds": round(time.perf_counter() - started, 3)}
        log.info("%s now speaks with %s (%s, was %s)", item.persona, item.job_id or "its base model", item.reason,
                 before or "its base model")
        self._bus.publish("adapter_swapped", **event)
        return {"topic": "adapter_swapped", **event}
