"""What one sandboxed run produced, in a form the forge and the UI can both read."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


class KillReason:
    """Why the sandbox ended a run before the guest exited on its own."""

    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"
    INTERRUPTED = "interrupted"  # the host process was interrupted mid-run (e.g. KeyboardInterrupt)
    CANCELLED = "cancelled"  # its caller asked it to stop (a Stop of the task it runs for)


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one run: the guest's exit status and output, and whether the sandbox stepped in.

    exit_code is the guest's status; negative means it died of that signal (Python's convention),
    None means no status could be obtained. kill_reason is one of KillReason when the sandbox killed it.
    """

    backend: str
    run_id: str
    exit_code: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    killed: bool
    kill_reason: str | None
    wall_ms: float

    @property
    def cancelled(self) -> bool:
        """True when its caller stopped the run (killed mid-run, or never started because the stop
        came first): its outcome says nothing about the guest's code."""
        return self.kill_reason == KillReason.CANCELLED

    @property
    def ok(self) -> bool:
        """True when the guest exited 0 without the sandbox killing it."""
        return self.exit_code == 0 and not self.killed

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (msgpack/JSON safe) for events, manifests and logs."""
        data = asdict(self)
        data["ok"] = self.ok
        return data

    @classmethod
    def cancelled_before_start(cls, backend: str, run_id: str) -> ExecutionResult:
        """The record of a run whose stop was asked for before its sandbox was started."""
        return cls(backend=backend, run_id=run_id, exit_code=None, stdout="", stderr="", stdout_truncated=False,
                   stderr_truncated=False, killed=True, kill_reason=KillReason.CANCELLED, wall_ms=0.0)
