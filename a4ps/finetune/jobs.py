"""Durable job records and the one-job-at-a-time lock, under `<data_dir>/finetune/`.

Why on disk: a fine-tune outlives a command and may outlive the backend that started it; after a
restart the user must see that a job was `interrupted`, not a job `running` forever. Each job is one
JSON file in `jobs/` (replaced atomically at every change). Why a lock file: jobs are started by the
backend's loop and by `a4ps finetune` in a shell, two processes; the job's own process holds an
exclusive `flock` on `job.lock` while it lives, so one job at a time holds across processes, and the
kernel drops the lock when the process dies, whatever killed it (no stale lock to clean up).

States: running -> done | failed | cancelled | interrupted (the process or its starter went away).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from a4ps.atomicfile import read_json, write_json
from a4ps.finetune.spec import ADAPTERS, FINETUNE, TEMP_PREFIX

log = logging.getLogger(__name__)

RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = "running", "done", "failed", "cancelled", "interrupted"
ENDED = (DONE, FAILED, CANCELLED, INTERRUPTED)
LOCK_FILE = "job.lock"


def process_token(pid: int | None = None) -> str:
    """"pid:start time" of a process (this one by default): a pid the kernel reuses reads differently."""
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return f"{pid}:?"
    return f"{pid}:{stat.rsplit(')', 1)[1].split()[19]}"


def token_alive(token: str | None) -> bool:
    """True while the process the token names still runs (and is not a zombie)."""
    if not token or ":" not in token:
        return False
    pid = token.split(":", 1)[0]
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and process_token(int(pid)) == token


class JobLock:
    """The exclusive lock a job's process holds (see the module docstring)."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / FINETUNE / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, job_id: str, wait_s: float = 3.0) -> bool:
        """Take the lock (retrying for `wait_s`, a probe may hold it a moment); False when a job holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{job_id} {os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def held_by(self) -> str | None:
        """The job id whose process holds the lock now, or None when no job runs."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
                return text[0] if text else "?"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


class JobStore:
    """The job records; see the module docstring. Not thread-safe by itself: one writer per job."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.folder = self.data_dir / FINETUNE / "jobs"
        self.logs = self.data_dir / FINETUNE / "logs"
        self.lock = JobLock(self.data_dir)

    def path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def get(self, job_id: str) -> dict[str, Any] | None:
        try:
            return read_json(self.path(job_id))
        except ValueError as exc:
            log.warning("finetune: %s", exc)
            return None

    def all(self) -> list[dict[str, Any]]:
        """Every readable record, oldest first (job ids sort by start time)."""
        out = []
        for path in sorted(self.folder.glob("*.json")):
            record = self.get(path.stem)
            if isinstance(record, dict):
                out.append(record)
        return out

    def save(self, record: dict[str, Any]) -> None:
        write_json(self.path(record["job_id"]), record)

    def begin(self, job_id: str, persona: str, trigger: str, **fields: Any) -> dict[str, Any]:
        record = {"job_id": job_id, "persona": persona, "trigger": trigger, "state": RUNNING,
                  "started_at": time.time(), "finished_at": None, "runner": process_token(), "pid": None,
                  "progress": None,
                  "error": None, "report": None, **fields}
        self.save(record)
        return record

    def end(self, record: dict[str, Any], state: str, **fields: Any) -> dict[str, Any]:
        record.update(fields, state=state, finished_at=time.time())
        self.save(record)
        return record

    def last(self, persona: str, states: tuple[str, ...] = ENDED) -> dict[str, Any] | None:
        found = [r for r in self.all() if r.get("persona") == persona and r.get("state") in states]
        return found[-1] if found else None

    def reconcile(self) -> list[str]:
        """Mark as interrupted the `running` records that no process will finish (the job's process
        holds no lock and the process that started it, which writes its end, is gone), and remove the
        temp folders no live job owns; returns the job ids marked. Run at backend start and before a job."""
        holder = self.lock.held_by()
        marked, live = [], {holder}
        for record in self.all():
            if record.get("state") == RUNNING and token_alive(record.get("runner")):
                live.add(record.get("job_id"))
            elif record.get("state") == RUNNING and record.get("job_id") != holder:
                self.end(record, INTERRUPTED, error="its process ended without a result (a crash, a kill or a "
                                                    "backend restart); the partial adapter was discarded")
                marked.append(record["job_id"])
                log.warning("finetune: job %s (%s) was interrupted", record["job_id"], record.get("persona"))
        for temp in (self.data_dir / ADAPTERS).glob(f"*/{TEMP_PREFIX}*"):
            if temp.name[len(TEMP_PREFIX):] not in live:
                shutil.rmtree(temp, ignore_errors=True)
        return marked
