"""The backend's `finetune` loop: when a persona's golden set has grown enough, train it a LoRA.

Why here and not in the Curator: judging and training are different rhythms; this loop only watches
the golden files (counted again only when one changed) and the job records. A persona is due when
its golden set holds `autopoiesis.fine_tune_trigger_size` more samples than at its last job (a job
that was interrupted by a restart does not count: it is owed). An automatic job waits until no task
runs or waits; a `finetune` command starts one at once. One job at a time (a4ps/finetune/jobs.py),
each in its own process (a4ps/finetune/runner.py), so this loop's step simply follows it.

Events: `finetune_job` (job_id, persona, trigger, state, phase, error, report when done) at each
change, `finetune_progress` (persona, job_id, step, total, loss, eta_s) per training step.
Shutdown (request_stop sets the stop event) kills a running job; it is recorded `interrupted`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from a4ps.config.schema import Autopoiesis
from a4ps.curator.golden import FOLDER, file_name
from a4ps.curator.lines import read_lines
from a4ps.errors import CodedError
from a4ps.events import EventBus
from a4ps.finetune.jobs import CANCELLED, DONE, FAILED, RUNNING, JobStore
from a4ps.finetune.runner import JobFailed, run_job
from a4ps.finetune.spec import job_spec, new_job_id

log = logging.getLogger(__name__)

STEP_WAIT_S = 1.0
RECONCILE_EVERY_S = 30.0  # records left running by a process that ended (this loop runs no job then)
SHOWN_JOBS = 8


class FineTuneRefused(CodedError):
    """A command that cannot be done now; `code` goes into the error reply."""


class GoldenCounter:
    """Samples per persona in the golden files, recounted only when a file changed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._seen: dict[str, tuple[tuple[int, int], int]] = {}
        self._lock = threading.Lock()

    def count(self, persona: str) -> int:
        path = self.folder / file_name(persona)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return 0
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._seen.get(persona)
            if cached is None or cached[0] != key:
                cached = (key, len(read_lines(path).records))
                self._seen[persona] = cached
            return cached[1]


class FineTuner:
    """The trigger, the job being followed, cancel and the snapshot; see the module docstring."""

    def __init__(self, config: Autopoiesis, data_dir: Path, base_model: Callable[[], Path],
                 personas: Callable[[], list[str]], idle: Callable[[], bool], bus: EventBus,
                 stop: threading.Event, run: Callable[..., dict[str, Any]] = run_job):
        self._config, self._data_dir, self._base_model = config, Path(data_dir), base_model
        self._personas, self._idle, self._bus, self._stop, self._run = personas, idle, bus, stop, run
        self.store = JobStore(self._data_dir)
        self.golden = GoldenCounter(self._data_dir / FOLDER)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._requested: dict[str, Any] | None = None
        self._running: dict[str, Any] | None = None
        self._cancel: threading.Event | None = None
        self._next_reconcile = time.monotonic() + RECONCILE_EVERY_S
        interrupted = self.store.reconcile()
        if interrupted:
            log.warning("finetune: %d job(s) were running when the backend last stopped; marked interrupted: %s",
                        len(interrupted), ", ".join(interrupted))

    # --- the trigger ------------------------------------------------------------------------------
    def baseline(self, persona: str) -> int:
        """Golden samples at the persona's last job that counts (any end but interrupted)."""
        last = self.store.last(persona, states=(DONE, FAILED, CANCELLED))
        return int(last.get("samples_total") or 0) if last else 0

    def due(self) -> str | None:
        """The first persona whose golden set grew by the trigger size since its last job."""
        for persona in self._personas():
            if self.golden.count(persona) - self.baseline(persona) >= self._config.fine_tune_trigger_size:
                return persona
        return None

    # --- commands ---------------------------------------------------------------------------------
    def request(self, persona: str, steps: int | None = None) -> dict[str, Any]:
        """`finetune`: a job for `persona` as soon as the loop looks (at once unless one runs)."""
        if persona not in self._personas():
            raise FineTuneRefused("not_found", f"no persona {persona!r}; known: {', '.join(self._personas())}")
        if self.golden.count(persona) == 0:
            raise FineTuneRefused("no_samples", f"{persona} has no golden samples yet (data dir {FOLDER}/)")
        with self._lock:
            busy = self._running or self._requested
            if busy:
                raise FineTuneRefused("busy", f"fine-tune job {busy['job_id']} ({busy['persona']}) is "
                                              f"{'running' if self._running else 'about to start'}; one at a time")
            holder = self.store.lock.held_by()
            if holder:
                raise FineTuneRefused("busy", f"fine-tune job {holder} runs (started elsewhere); one at a time")
            self._requested = {"job_id": new_job_id(), "persona": persona, "steps": steps, "trigger": "command"}
            requested = dict(self._requested)
        self._wake.set()
        return requested

    def cancel(self, job_id: str | None = None) -> dict[str, Any]:
        """`cancel_finetune`: kill the running job (its process group), or drop the requested one."""
        with self._lock:
            for job in (self._running, self._requested):
                if job is not None and job_id in (None, job["job_id"]):
                    if job is self._requested:
                        self._requested = None
                        return {"job_id": job["job_id"], "state": "cancelled"}
                    if self._cancel is not None:
                        self._cancel.set()
                    return {"job_id": job["job_id"], "state": "cancelling"}
        raise FineTuneRefused("not_running", "no fine-tune job runs" + (f" with id {job_id}" if job_id else ""))

    # --- the loop ---------------------------------------------------------------------------------
    def step(self) -> None:
        self._wake.wait(STEP_WAIT_S)
        self._wake.clear()
        if self._stop.is_set():
            return
        with self._lock:
            job, self._requested = self._requested, None
        if job is None and time.monotonic() >= self._next_reconcile:
            self._next_reconcile = time.monotonic() + RECONCILE_EVERY_S
            self.store.reconcile()  # a job whose process outlived the last start by a moment, or a CLI's
        if job is None:
            if not self._config.enabled or not self._idle() or self.store.lock.held_by():
                return
            persona = self.due()
            if persona is None:
                return
            job = {"job_id": new_job_id(), "persona": persona, "steps": None, "trigger": "golden_growth"}
        self.run(job)

    def interrupt(self) -> None:
        """Shutdown: the running job is killed by the runner (it watches the stop event)."""
        self._wake.set()

    def run(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Run one job to its end in this thread; returns the report, or None when it did not finish."""
        persona = job["persona"]
        cancel = threading.Event()
        with self._lock:
            self._running = {**job, "state": RUNNING, "phase": "starting", "started_at": time.time(), "progress": None}
            self._cancel = cancel
        self._publish_job()
        try:
            spec = job_spec(self._config, persona=persona, dataset=self._data_dir / FOLDER / file_name(persona),
                            base_model=self._base_model(), data_dir=self._data_dir, steps=job["steps"],
                            job_id=job["job_id"])
            report = self._run(spec, trigger=job["trigger"], on_event=self._on_event, cancel=cancel,
                               shutdown=self._stop)
        except Exception as exc:  # noqa: BLE001 - the loop lives on; the record (if any) says why
            state = exc.state if isinstance(exc, JobFailed) and exc.state != "busy" else FAILED
            log.warning("finetune: job %s (%s) %s: %s", job["job_id"], persona, state, exc)
            self._publish_job(state=state, error=str(exc))
            return None
        finally:
            with self._lock:
                self._running, self._cancel = None, None
        log.info("finetune: job %s (%s) done: %s (%d steps, %.2f steps/s)", job["job_id"], persona,
                 report["adapter_gguf"], report["steps"], report["steps_per_s"] or 0.0)
        self._bus.publish("finetune_job", job_id=job["job_id"], persona=persona, trigger=job["trigger"], state=DONE,
                          phase="done", error=None, report=report)
        return report

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            running = self._running
            if running is None:
                return
            if event.get("event") == "phase":
                running["phase"] = event.get("phase")
            else:
                running["progress"] = {k: event.get(k) for k in ("step", "total", "loss", "eta_s")}
        if event.get("event") == "phase":
            self._publish_job()
        else:
            self._bus.publish("finetune_progress", persona=running["persona"], job_id=running["job_id"],
                              step=event.get("step"), total=event.get("total"), loss=event.get("loss"),
                              eta_s=event.get("eta_s"))

    def _publish_job(self, state: str | None = None, error: str | None = None) -> None:
        with self._lock:
            job = dict(self._running or {})
        if job:
            self._bus.publish("finetune_job", job_id=job["job_id"], persona=job["persona"], trigger=job["trigger"],
                              state=state or job["state"], phase=job.get("phase"), error=error, report=None)

    # --- what clients see -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            running = dict(self._running) if self._running else None
            requested = dict(self._requested) if self._requested else None
        jobs = [{k: r.get(k) for k in ("job_id", "persona", "trigger", "state", "started_at", "finished_at",
                                        "samples_total", "steps", "error", "report")}
                for r in self.store.all()[-SHOWN_JOBS:]]
        personas = {}
        for persona in self._personas():
            count = self.golden.count(persona)
            personas[persona] = {"golden": count, "since_last_job": count - self.baseline(persona)}
        return {"enabled": self._config.enabled, "trigger_size": self._config.fine_tune_trigger_size,
                "running": running, "requested": requested, "jobs": jobs, "personas": personas}
