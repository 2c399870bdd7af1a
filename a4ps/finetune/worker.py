"""A fine-tune job's own process: `python -m a4ps.finetune.worker SPEC.json --parent PID`.

Why a process: training holds the CPU (or GPU) and gigabytes for minutes; in its own process the
backend stays responsive, the graph is never blocked, torch is never imported into the app, and a
cancel is a kill of the process group (started with its own session). It dies with its starter
(PR_SET_PDEATHSIG), so a killed backend leaves no orphan training on, and it runs at a lower
priority, so the society's own turns still get the CPU first.

Protocol: one JSON object per line on stdout — {"event": "phase"|"progress"|"done"|"failed"|"busy", ...};
everything libraries print goes to stderr (the job's log), so stdout carries nothing else.
Exit codes: 0 done, 1 failed, 75 busy (another job holds the lock).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

EXIT_FAILED, EXIT_BUSY = 1, 75
NICENESS = 10
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Linux: SIGKILL when the starter dies; and exit now if it died before this was set."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent and os.getppid() != parent:
        os._exit(EXIT_FAILED)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def protocol_stream() -> TextIO:
    """A private copy of stdout for the protocol; fd 1 then points at stderr for everything else."""
    stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m a4ps.finetune.worker")
    parser.add_argument("spec", type=Path, help="the job spec (JSON, a4ps/finetune/spec.py)")
    parser.add_argument("--parent", type=int, default=0, help="the starter's pid: die with it")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    out = protocol_stream()
    signal.signal(signal.SIGTERM, _terminated)  # a cancel: unwind, so the job removes its temp folder

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event, ensure_ascii=True, allow_nan=False) + "\n")

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from a4ps.finetune.dataset import DatasetError
    from a4ps.finetune.job import JobError, run_job
    from a4ps.finetune.jobs import JobLock
    from a4ps.finetune.spec import JobSpec

    try:
        spec = JobSpec.model_validate_json(args.spec.read_text())
    except (OSError, ValueError) as exc:
        emit({"event": "failed", "error": f"bad job spec {args.spec}: {exc}"})
        return EXIT_FAILED
    lock = JobLock(Path(spec.data_dir))
    if not lock.acquire(spec.job_id):
        emit({"event": "busy", "error": "another fine-tune job runs (one at a time)"})
        return EXIT_BUSY
    emit({"event": "phase", "phase": "started", "pid": os.getpid()})
    try:
        report = run_job(spec, emit)
    except (DatasetError, JobError, ValueError, RuntimeError, OSError, ImportError) as exc:
        traceback.print_exc()
        emit({"event": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return EXIT_FAILED
    finally:
        lock.release()
    emit({"event": "done", "report": report})
    return 0


if __name__ == "__main__":
    sys.exit(main())
