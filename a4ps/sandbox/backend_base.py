"""What every sandbox backend provides, and the limits they all derive from the settings."""

from __future__ import annotations

import os
import shutil
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from a4ps.config.schema import Sandbox
from a4ps.sandbox.execution_result import ExecutionResult

# Host paths searched for runtime binaries; the caller's PATH is deliberately not trusted.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Open files per guest process: enough for Python and a few files, not for fd exhaustion games.
NOFILE_LIMIT = 256
# gVisor's sentry and its ptrace stubs are host tasks in the run's pids cgroup: measured ~18 host
# tasks per guest process (1173 at 64 guest processes; a 1024 cap made the sentry panic). Guest
# processes themselves are capped by RLIMIT_NPROC inside the sandbox; this only bounds the host.
_GVISOR_BASE_TASKS = 512
_GVISOR_TASKS_PER_GUEST_PROCESS = 48


def gvisor_host_pids(guest_pids: int) -> int:
    """pids cgroup cap for a gVisor sandbox allowing `guest_pids` guest processes."""
    return _GVISOR_BASE_TASKS + _GVISOR_TASKS_PER_GUEST_PROCESS * guest_pids
SANDBOX_UID = 1000
SANDBOX_GID = 1000


def run_cgroup_name(run_id: str) -> str:
    """Name of a run's cgroup directory (the same in every hierarchy)."""
    return f"a4ps-sbx-{run_id}"


def find_binary(name: str) -> str | None:
    """Absolute path of a trusted system binary, or None."""
    return shutil.which(name, path=SYSTEM_PATH)


@dataclass(frozen=True)
class SandboxLimits:
    """Numeric limits for one run, derived from the [sandbox] settings."""

    memory_bytes: int
    cpu_quota: float
    pids: int
    tmpfs_bytes: int
    output_limit: int
    nofile: int = NOFILE_LIMIT

    @classmethod
    def from_settings(cls, settings: Sandbox) -> SandboxLimits:
        return cls(
            memory_bytes=settings.memory_mb << 20,
            cpu_quota=settings.cpu_quota,
            pids=settings.pids_limit,
            tmpfs_bytes=settings.tmpfs_mb << 20,
            output_limit=settings.output_limit_bytes,
        )

    def address_space(self, cgroup_enforced: bool) -> int:
        """RLIMIT_AS: the memory cap itself without a cgroup; with one, room for virtual reservations
        (thread stacks, arenas) so the cgroup stays the precise meter of resident memory."""
        return self.memory_bytes * 2 if cgroup_enforced else self.memory_bytes


@dataclass(frozen=True)
class RunPaths:
    """Host paths of one run: its private dir and the staged inputs inside it."""

    run_dir: Path
    stage_dir: Path


class SandboxBackend(ABC):
    """One isolation technology. Stateless per run, so runs may execute concurrently."""

    name: str = ""

    def __init__(self, settings: Sandbox, work_dir: Path, assets_dir: Path) -> None:
        self.settings = settings
        self.limits = SandboxLimits.from_settings(settings)
        self.work_dir = work_dir
        self.assets_dir = assets_dir

    @abstractmethod
    def prerequisites(self) -> str | None:
        """None when this backend can be tried here, otherwise why not (one line)."""

    @abstractmethod
    def execute(self, run_id: str, paths: RunPaths, timeout_s: float,
                cancel: threading.Event | None = None) -> ExecutionResult:
        """Run the staged guest in a fresh sandbox and always tear the sandbox down. Once `cancel` is
        set the sandbox is killed (within a fraction of a second) and the result's kill_reason is
        KillReason.CANCELLED."""

    @abstractmethod
    def reap_stale(self, run_id: str) -> None:
        """Tear down what a run left behind when its host process died mid-run (e.g. SIGKILL)."""

    def describe(self) -> str:
        """Short description of the isolation in force, for the selection log."""
        return self.name


def decode_output(data: bytes) -> str:
    """Guest output as text; undecodable bytes are replaced, never fatal."""
    return data.decode("utf-8", errors="replace")


def is_root() -> bool:
    return os.geteuid() == 0
