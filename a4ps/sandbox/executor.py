"""SecureCodeExecutor: the only door through which model-written Python is run.

Backends, strongest first: docker with runtime runsc (gVisor) when an engine answers; runsc with a
generated OCI bundle; bubblewrap. `auto` takes the first one whose prerequisites hold and that
passes a real probe run. With none available the executor raises SandboxUnavailable: there is
deliberately no plain-subprocess fallback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from a4ps.config.schema import Sandbox
from a4ps.sandbox.backend_base import RunPaths, SandboxBackend
from a4ps.sandbox.bwrap_backend import BwrapBackend
from a4ps.sandbox.docker_backend import DockerBackend
from a4ps.sandbox.errors import SandboxFailure, SandboxUnavailable
from a4ps.sandbox.execution_result import ExecutionResult
from a4ps.sandbox.guest_payload import stage_inputs
from a4ps.sandbox.guest_rootfs import default_assets_dir
from a4ps.sandbox.runsc_backend import RunscBackend

log = logging.getLogger(__name__)

BACKEND_ORDER = ("docker", "runsc", "bwrap")
_BACKEND_CLASSES: dict[str, type[SandboxBackend]] = {
    "docker": DockerBackend,
    "runsc": RunscBackend,
    "bwrap": BwrapBackend,
}
_PROBE_MARKER = "a4ps-sandbox-probe-ok"
_PROBE_TIMEOUT_S = 30.0
_OWNER_FILE = "owner.json"


def _process_start(pid: int) -> str | None:
    """Kernel start time of a process (tells a live owner from a reused pid), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class SecureCodeExecutor:
    """Runs untrusted Python in a fresh, limited sandbox per call; safe to share between threads."""

    def __init__(self, settings: Sandbox, work_dir: Path | str, *, assets_dir: Path | None = None) -> None:
        self._settings = settings
        self._work_dir = Path(work_dir).resolve()
        self._assets_dir = (assets_dir or default_assets_dir()).resolve()
        self._lock = threading.Lock()
        self._backends: dict[str, SandboxBackend] = {}
        self._verdicts: dict[str, str | None] = {}
        self._selected: SandboxBackend | None = None

    @property
    def settings(self) -> Sandbox:
        return self._settings

    def _backend(self, name: str) -> SandboxBackend:
        if name not in self._backends:
            self._backends[name] = _BACKEND_CLASSES[name](self._settings, self._work_dir, self._assets_dir)
        return self._backends[name]

    def _verdict(self, name: str) -> str | None:
        """None when the backend works here (prerequisites hold and a probe run succeeded)."""
        if name in self._verdicts:
            return self._verdicts[name]
        backend = self._backend(name)
        try:
            reason = backend.prerequisites()
            if reason is None:
                result = self._execute(backend, f"print({_PROBE_MARKER!r})", None, None, _PROBE_TIMEOUT_S)
                if not (result.ok and result.stdout.strip() == _PROBE_MARKER):
                    reason = (
                        f"probe run failed (exit {result.exit_code}, killed={result.kill_reason}): "
                        f"{(result.stderr or result.stdout).strip()[-300:]}"
                    )
        except (OSError, SandboxFailure) as exc:
            reason = f"probe run failed: {exc}"
        self._verdicts[name] = reason
        return reason

    def availability(self) -> dict[str, str | None]:
        """Every backend's verdict: None when usable, else why not. Probes each one not yet tried."""
        with self._lock:
            return {name: self._verdict(name) for name in BACKEND_ORDER}

    def select_backend(self) -> str:
        """Name of the backend runs will use; decided once, logged with the reasons."""
        with self._lock:
            if self._selected is not None:
                return self._selected.name
            wanted = self._settings.backend
            candidates = BACKEND_ORDER if wanted == "auto" else (wanted,)
            rejected: list[str] = []
            for name in candidates:
                reason = self._verdict(name)
                if reason is None:
                    self._selected = self._backend(name)
                    why = "; ".join(rejected) if rejected else "strongest available" if wanted == "auto" else "configured"
                    log.info("sandbox backend: %s — %s", self._selected.describe(), why)
                    self._reap_stale_runs()
                    return name
                rejected.append(f"{name} unavailable: {reason}")
                log.info("sandbox backend %s unavailable: %s", name, reason)
            raise SandboxUnavailable(
                f"no sandbox backend available for backend={wanted!r}: " + "; ".join(rejected)
            )

    def _reap_stale_runs(self) -> None:
        """Tear down runs whose host process died mid-run (their run dir and owner file remain)."""
        runs = self._work_dir / "runs"
        if not runs.is_dir():
            return
        for run_dir in runs.iterdir():
            try:
                owner = json.loads((run_dir / _OWNER_FILE).read_text())
            except (OSError, ValueError):
                continue  # being set up right now, or not ours
            if _process_start(owner["pid"]) == owner["start"]:
                continue  # its owner is alive (another executor, maybe another process)
            name = owner.get("backend")
            if name in _BACKEND_CLASSES and self._verdict(name) is None:
                try:
                    self._backend(name).reap_stale(run_dir.name)
                except (OSError, SandboxFailure) as exc:
                    log.warning("could not reap stale sandbox run %s (%s): %s", run_dir.name, name, exc)
                    continue
                log.info("reaped stale sandbox run %s (%s) left by dead pid %s", run_dir.name, name, owner["pid"])
            shutil.rmtree(run_dir, ignore_errors=True)

    @property
    def backend_name(self) -> str:
        return self.select_backend()

    def backend_description(self) -> str:
        """The selected backend and the isolation it has here (e.g. which cgroup version), for logs/UI."""
        self.select_backend()
        assert self._selected is not None
        return self._selected.describe()

    def run_python(
        self,
        source: str,
        *,
        files: dict[str, str] | None = None,
        stdin: bytes | None = None,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecutionResult:
        """Run `source` as __main__ in a fresh sandbox; `files` are placed beside it in the scratch dir.

        Once `cancel` is set (a Stop) the sandbox is killed within a fraction of a second and the
        result is `cancelled` (kill_reason KillReason.CANCELLED); a run whose cancel is already set
        is not started at all. Raises SandboxUnavailable when no backend can run here, ValueError for
        a bad file name, SandboxFailure when the sandbox itself (not the guest) broke.
        """
        self.select_backend()
        assert self._selected is not None
        timeout = self._settings.timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ValueError("timeout_s must be positive")
        return self._execute(self._selected, source, files, stdin, timeout, cancel)

    def _execute(
        self,
        backend: SandboxBackend,
        source: str,
        files: dict[str, str] | None,
        stdin: bytes | None,
        timeout_s: float,
        cancel: threading.Event | None = None,
    ) -> ExecutionResult:
        run_id = uuid.uuid4().hex[:16]
        if cancel is not None and cancel.is_set():
            log.info("sandbox run %s (%s) not started: cancelled", run_id, backend.name)
            return ExecutionResult.cancelled_before_start(backend.name, run_id)
        run_dir = self._work_dir / "runs" / run_id
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(mode=0o755)
        try:
            owner = {"pid": os.getpid(), "start": _process_start(os.getpid()), "backend": backend.name}
            (run_dir / _OWNER_FILE).write_text(json.dumps(owner))
            paths = RunPaths(run_dir=run_dir, stage_dir=run_dir / "input")
            stage_inputs(paths.stage_dir, source, files, stdin)
            try:
                result = backend.execute(run_id, paths, timeout_s, cancel)
            except OSError as exc:
                raise SandboxFailure(f"{backend.name} run {run_id} failed: {exc}") from exc
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        if result.killed:
            log.info("sandbox run %s (%s) killed: %s after %.0f ms", run_id, backend.name, result.kill_reason, result.wall_ms)
        return result
