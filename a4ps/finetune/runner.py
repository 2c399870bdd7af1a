"""Starts a job's process, streams its progress, and keeps its durable record: `run_job`.

Why one runner for the backend and the CLI: both need the same guarantees — the dataset checked
before a process starts, one job at a time, a record that always ends (done, failed, cancelled or,
when this process dies first, interrupted at the next start), a cancel that kills the whole process
group, and a report dict to hand to the gate. The job's stderr goes to
`<data_dir>/finetune/logs/<job_id>.log`; its last lines come with a failure.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from a4ps.atomicfile import write_json
from a4ps.finetune.dataset import load_dataset
from a4ps.finetune.jobs import CANCELLED, DONE, FAILED, INTERRUPTED, JobStore
from a4ps.finetune.spec import FINETUNE, JobSpec

log = logging.getLogger(__name__)

KILL_GRACE_S = 5.0
LOG_TAIL_LINES = 12
OnEvent = Callable[[dict[str, Any]], None]


class JobFailed(RuntimeError):
    """The job ended without an adapter; `state` is failed, cancelled, interrupted or busy."""

    def __init__(self, state: str, message: str, record: dict[str, Any] | None = None):
        super().__init__(message)
        self.state, self.record = state, record


def worker_command(spec_path: Path) -> list[str]:
    return [sys.executable, "-m", "a4ps.finetune.worker", str(spec_path), "--parent", str(os.getpid())]


def kill_group(process: subprocess.Popen, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM to the job's process group, SIGKILL after `grace_s`; the process is reaped."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-LOG_TAIL_LINES:])


def run_job(spec: JobSpec, *, trigger: str, on_event: OnEvent | None = None,
            cancel: threading.Event | None = None, shutdown: threading.Event | None = None) -> dict[str, Any]:
    """Run the job in its own process and return its report (report.json's content).

    `on_event` gets every protocol line (phase, progress); setting `cancel` kills the job (recorded
    cancelled), setting `shutdown` too (recorded interrupted: the backend is stopping). Raises
    JobFailed, the dataset's DatasetError before any process starts."""
    store = JobStore(Path(spec.data_dir))
    store.reconcile()
    dataset = load_dataset(Path(spec.dataset))  # a bad file is an error here, before a process starts
    holder = store.lock.held_by()
    if holder is not None:
        raise JobFailed("busy", f"another fine-tune job runs ({holder}); one at a time")
    record = store.begin(spec.job_id, spec.persona, trigger, dataset=spec.dataset, dataset_sha256=dataset.sha256,
                         samples_total=len(dataset.samples), steps=spec.steps, base_model=spec.base_model,
                         log=str(store.logs / f"{spec.job_id}.log"))
    spec_path = Path(spec.data_dir) / FINETUNE / "specs" / f"{spec.job_id}.json"
    write_json(spec_path, spec.model_dump())
    store.logs.mkdir(parents=True, exist_ok=True)
    log_path = Path(record["log"])
    stop = cancel or threading.Event()
    outcome: dict[str, Any] = {}
    with open(log_path, "ab") as log_file:
        try:
            process = subprocess.Popen(worker_command(spec_path), stdout=subprocess.PIPE, stderr=log_file,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(Path.cwd()))
        except OSError as exc:
            store.end(record, FAILED, error=f"the job's process did not start: {exc}")
            raise JobFailed(FAILED, record["error"], record) from None
        record["pid"] = process.pid
        store.save(record)
        killed = threading.Event()

        def watch() -> None:
            while process.poll() is None:
                if stop.wait(0.2) or (shutdown is not None and shutdown.is_set()):
                    killed.set()
                    kill_group(process)
                    return

        watcher = threading.Thread(target=watch, name=f"finetune-watch-{spec.job_id}", daemon=True)
        watcher.start()
        for raw in process.stdout:  # type: ignore[union-attr]
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") in ("done", "failed", "busy"):
                outcome = event
            elif event.get("event") == "progress":
                record["progress"] = {k: event.get(k) for k in ("step", "total", "loss", "eta_s")}
                store.save(record)
            if on_event is not None and event.get("event") in ("phase", "progress"):
                on_event(event)
        returncode = process.wait()
        watcher.join(KILL_GRACE_S + 31)  # it ends with the process
    spec_path.unlink(missing_ok=True)
    if outcome.get("event") != "done" or returncode != 0:
        shutil.rmtree(spec.temp_dir(), ignore_errors=True)  # a killed job leaves no half adapter anywhere
    if outcome.get("event") == "done" and returncode == 0:
        report = outcome["report"]
        store.end(record, DONE, report={k: report.get(k) for k in ("adapter_dir", "adapter_gguf", "steps",
                                                                      "train_loss", "steps_per_s", "peak_rss_mb")})
        return report
    if killed.is_set():
        state = INTERRUPTED if shutdown is not None and shutdown.is_set() else CANCELLED
        message = "stopped by the backend's shutdown" if state == INTERRUPTED else "cancelled"
    elif outcome.get("event") == "busy":
        state, message = "busy", str(outcome.get("error"))
    else:
        state = FAILED
        message = str(outcome.get("error") or f"the job's process exited with status {returncode} and no result")
        tail = _log_tail(log_path)
        if tail and not outcome:
            message += f"; its log ends:\n{tail}"
    store.end(record, FAILED if state == "busy" else state, error=message)
    raise JobFailed(state, message, record)
