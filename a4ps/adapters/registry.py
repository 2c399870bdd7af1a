"""The adapter registry: every persona's adapters with their status, and the loop that gates them.

Why one place: the person asks "which adapters are there, which one speaks, why" (`a4ps adapters`,
the snapshot), and the backend must gate each new job once and put a promoted one to work once. A
status is derived, never stored twice: a job folder without gate.json is a `candidate`; its gate
says `promoted` or `kept_aside`; the image's choice adds `in_use`, `previous` and `by_hand`.

The loop ("adapters"): when the society is idle (no task runs or waits), it gates the oldest
candidate (a task that arrives interrupts the gate, which runs again later) and asks for the swap of
a persona's newest promoted adapter that no promotion has put forward before. Each gate ends with an
`adapter_gated` event; a job whose gate fails GIVE_UP_AFTER times in this run is left as it is.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

from a4ps.adapters.choice import AdapterChoice
from a4ps.adapters.gate import KEPT_ASIDE, PROMOTED, AdapterGate, GateInterrupted
from a4ps.adapters.jobs import AdapterJob, JobError, load_job, scan
from a4ps.adapters.swap import AdapterSwap, SwapError
from a4ps.events import Event, EventBus
from a4ps.models import ModelError
from a4ps.protos import ProtoManager

log = logging.getLogger(__name__)

STEP_WAIT_S = 5.0
GIVE_UP_AFTER = 3
CANDIDATE, IN_USE, PREVIOUS = "candidate", "in_use", "previous"


class JobBusy(Exception):
    """Another process (or thread) is gating this job now."""


class job_lock:
    """An exclusive, non-blocking flock on the job folder: one gate per job at a time, across processes."""

    def __init__(self, folder: Path):
        self._folder, self._fd = folder, -1

    def __enter__(self) -> "job_lock":
        self._fd = os.open(self._folder, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise JobBusy(f"{self._folder} is being gated by another process") from None
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # releases the lock


def status_of(job: AdapterJob, choice: AdapterChoice) -> str:
    if choice.current(job.persona) == job.job_id:
        return IN_USE
    if job.gate is None:
        return CANDIDATE
    if choice.previous(job.persona) == job.job_id:
        return PREVIOUS
    return PROMOTED if job.gate.get("decision") == PROMOTED or choice.by_hand(job.job_id) else KEPT_ASIDE


def listing(root: Path, choice: AdapterChoice, personas: list[str], pending: dict[str, Any] | None = None,
            errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Per persona: current, previous, pending swap and every job with its status (also offline)."""
    jobs = scan(root)
    result = {}
    for name in sorted(set(personas) | {j.persona for j in jobs}):
        rows = [{**job.public(), "status": status_of(job, choice), "by_hand": choice.by_hand(job.job_id),
                 "gate_error": (errors or {}).get(job.job_id)} for job in jobs if job.persona == name]
        result[name] = {"current": choice.current(name), "previous": choice.previous(name),
                        "pending": (pending or {}).get(name), "adapters": rows}
    return result


class AdapterRegistry:
    """The adapters organ as the backend and its commands see it."""

    def __init__(self, root: Path, protos: ProtoManager, choice: AdapterChoice, gate: AdapterGate,
                 swap: AdapterSwap, idle: Callable[[], bool], bus: EventBus, stop: threading.Event):
        self.root, self.choice, self.swap = root, choice, swap
        self._protos, self._gate, self._idle, self._bus, self._stop = protos, gate, idle, bus, stop
        self._wake = threading.Event()
        self._yield = threading.Event()  # set when a task comes: a running gate stops for it
        self._failures: dict[str, int] = {}
        self._errors: dict[str, str] = {}
        self._gating: str | None = None

    # --- what there is --------------------------------------------------------------------------
    def listing(self) -> dict[str, Any]:
        """Per persona: the adapter in use, the one before, any pending swap, and every job."""
        return {"personas": listing(self.root, self.choice, self._protos.names(), self.swap.pending(), self._errors),
                "gating": self._gating}

    def export(self) -> dict[str, Any]:
        """The choice, for the living image."""
        return self.choice.export()

    def snapshot(self) -> dict[str, Any]:
        return {"in_use": self.choice.in_use(), "pending": self.swap.pending(), "gating": self._gating}

    # --- the person's commands ------------------------------------------------------------------
    def promote(self, persona: str, job_id: str) -> str:
        """Put a gated adapter to work (by hand when its gate kept it aside); returns the swap id."""
        try:
            job = load_job(self.root, persona, job_id)
        except JobError as exc:
            raise SwapError(exc.code, str(exc)) from None
        if job.gate is None:
            raise SwapError("not_gated", f"adapter {job_id} of {persona} has not been through its gate yet")
        swap_id = self.swap.request(persona, job_id)
        if job.gate.get("decision") != PROMOTED:
            self.choice.promote_by_hand(job_id)
        else:
            self.choice.mark_offered(job_id)
        return swap_id

    def rollback(self, persona: str) -> tuple[str, str | None]:
        return self.swap.rollback(persona)

    def request_gate(self) -> None:
        self._wake.set()

    def apply_pending(self) -> list[dict[str, Any]]:
        """The task worker's call between tasks (never during one): requested swaps take effect."""
        return self.swap.apply_pending()

    # --- the loop -------------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """A task queued or running: a gate in progress gives way."""
        if event.topic == "task" and event.payload.get("status") in ("queued", "running"):
            self._yield.set()

    def interrupt(self) -> None:
        self._yield.set()
        self._wake.set()

    def step(self) -> None:
        """One look: gate a candidate and put promoted adapters forward, while the society is idle."""
        self._wake.wait(STEP_WAIT_S)
        self._wake.clear()
        if self._stop.is_set() or not self._idle():
            return
        jobs = scan(self.root)
        self._offer_promoted(jobs)
        for job in jobs:
            if job.gate is None and self._failures.get(job.job_id, 0) < GIVE_UP_AFTER:
                self.gate_job(job)
                self._offer_promoted(scan(self.root))
                return

    def gate_job(self, job: AdapterJob) -> dict[str, Any] | None:
        """Gate one job in this process; None when it was interrupted, busy or failed (logged)."""
        self._yield.clear()
        self._gating = job.job_id
        try:
            with job_lock(job.folder):
                job = load_job(self.root, job.persona, job.job_id)  # another process may have gated it
                if job.gate is not None:
                    return job.gate
                record = self._gate.run(job, self._protos.base_model(job.persona), self._yield)
        except (GateInterrupted, JobBusy) as exc:
            log.info("%s; the gate runs again when the society is idle", exc)
            return None
        except (JobError, ModelError, OSError) as exc:
            self._failures[job.job_id] = self._failures.get(job.job_id, 0) + 1
            self._errors[job.job_id] = str(exc)
            log.error("gate of adapter %s (%s) failed: %s", job.job_id, job.persona, exc)
            self._bus.publish("adapter_gated", persona=job.persona, job_id=job.job_id, error=str(exc))
            return None
        finally:
            self._gating = None
        self._errors.pop(job.job_id, None)
        self._bus.publish("adapter_gated", persona=job.persona, job_id=job.job_id, win_rate=record["win_rate"],
                          decision=record["decision"], wins=record["wins"], losses=record["losses"],
                          ties=record["ties"], threshold=record["threshold"], held_out=len(record["samples"]))
        return record

    def _offer_promoted(self, jobs: list[AdapterJob]) -> None:
        """The newest promoted adapter of each persona that was never put forward: swapped in once."""
        newest: dict[str, AdapterJob] = {}
        for job in jobs:
            if job.gate and job.gate.get("decision") == PROMOTED and not self.choice.offered(job.job_id):
                newest[job.persona] = job  # jobs come oldest first
                self.choice.mark_offered(job.job_id)
        for persona, job in newest.items():
            try:
                self.swap.request(persona, job.job_id)
            except SwapError as exc:
                log.error("promoted adapter %s of %s cannot be swapped in: %s", job.job_id, persona, exc)
