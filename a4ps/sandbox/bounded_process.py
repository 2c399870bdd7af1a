"""Run a sandbox runtime's host process with a wall timeout, capped output pipes and a cancel event.

Output is read through pipes on two threads (runsc writes at offset 0 when given a plain file, and a
flooding guest must be stopped, not buffered). The caller supplies `kill`, which must end the whole
sandbox (process group, container, cgroup), because killing the runtime's client alone is not enough.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from a4ps.sandbox.execution_result import KillReason

_READ_CHUNK = 65536
_READER_JOIN_S = 5.0
# How often a run with a cancel event looks at it while it waits for the runtime to exit.
CANCEL_POLL_S = 0.05


@dataclass
class BoundedOutcome:
    """Raw result of one bounded run, before a backend interprets it."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    kill_reason: str | None
    wall_ms: float


class _CappedReader(threading.Thread):
    """Drains one pipe, keeping at most `limit` bytes; past that it asks for the sandbox to be killed."""

    def __init__(self, pipe, limit: int, on_overflow: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._fd = pipe.fileno()
        self._pipe = pipe
        self._limit = limit
        self._on_overflow = on_overflow
        self.data = bytearray()
        self.truncated = False

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, _READ_CHUNK)
            except OSError:
                return
            if not chunk:
                return
            room = self._limit - len(self.data)
            if len(chunk) > room:
                self.data += chunk[:max(room, 0)]
                if not self.truncated:
                    self.truncated = True
                    self._on_overflow()
            else:
                self.data += chunk


class _KillOnce:
    """Calls the sandbox kill at most once and remembers the first reason (timeout vs output flood)."""

    def __init__(self, kill: Callable[[], None]) -> None:
        self._kill = kill
        self._lock = threading.Lock()
        self.reason: str | None = None

    def __call__(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
        self._kill()


def run_bounded(
    argv: Sequence[str],
    *,
    timeout_s: float,
    output_limit: int,
    kill: Callable[[subprocess.Popen], None],
    env: dict[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    cwd: str | None = None,
    cancel: threading.Event | None = None,
) -> BoundedOutcome:
    """Start argv in its own session, enforce timeout and output caps, and always reap it.

    `kill(proc)` is invoked on timeout, output overflow or once `cancel` is set (looked at every
    CANCEL_POLL_S) and must not return before the sandbox is dead or being torn down; the host
    process is also SIGKILLed as a backstop.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env if env is not None else {},
        pass_fds=tuple(pass_fds),
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )
    killer = _KillOnce(lambda: _kill_with_backstop(proc, kill))
    readers = [
        _CappedReader(proc.stdout, output_limit, lambda: killer(KillReason.OUTPUT_LIMIT)),
        _CappedReader(proc.stderr, output_limit, lambda: killer(KillReason.OUTPUT_LIMIT)),
    ]
    for reader in readers:
        reader.start()
    try:
        reason = _wait(proc, timeout_s, cancel)
        if reason is not None:
            killer(reason)
            proc.wait()
    except BaseException:
        killer(KillReason.INTERRUPTED)
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(_READER_JOIN_S)
        proc.stdout.close()
        proc.stderr.close()
    wall_ms = (time.monotonic() - started) * 1000.0
    out, err = readers
    return BoundedOutcome(
        returncode=proc.returncode,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        kill_reason=killer.reason,
        wall_ms=wall_ms,
    )


def _wait(proc: subprocess.Popen, timeout_s: float, cancel: threading.Event | None) -> str | None:
    """Wait for the runtime to exit: None when it did, else why it must be killed (timeout, cancelled)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if cancel is not None and cancel.is_set() and proc.poll() is None:
            return KillReason.CANCELLED
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None if proc.poll() is not None else KillReason.TIMEOUT
        try:
            proc.wait(timeout=remaining if cancel is None else min(remaining, CANCEL_POLL_S))
            return None
        except subprocess.TimeoutExpired:
            continue


def _kill_with_backstop(proc: subprocess.Popen, kill: Callable[[subprocess.Popen], None]) -> None:
    """Run the backend's kill, then SIGKILL the runtime's process group in case it lingers."""
    try:
        kill(proc)
    finally:
        if proc.returncode is None:  # not reaped yet, so the group id cannot have been reused
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
