"""Bubblewrap backend: namespaces, a seccomp filter, rlimits, and a cgroup when one can be made.

The guest's /etc and /sandbox are copies made by bwrap from file descriptors we open (no host
directory is bind-mounted except /usr read-only), so no host path needs to be reachable by the
unprivileged uid bwrap runs as. Process chain per run (all absolute paths, empty environment):
    [sh: join the run's cgroup] -> [setpriv: drop to a per-run unprivileged host uid, when root]
    -> prlimit (AS/NPROC/NOFILE/FSIZE/CORE) -> bwrap -> python3 launcher.
Running bwrap as a non-root host uid matters: the kernel exempts uid 0 from RLIMIT_NPROC, and a
guest mapped to host root would own every root-owned file it can see.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from pathlib import Path

from a4ps.config.schema import Sandbox
from a4ps.sandbox.backend_base import (
    SANDBOX_GID,
    SANDBOX_UID,
    RunPaths,
    SandboxBackend,
    decode_output,
    find_binary,
    is_root,
    run_cgroup_name,
)
from a4ps.sandbox.bounded_process import run_bounded
from a4ps.sandbox.cgroup_limits import CgroupLimits, CgroupManager, RunCgroup
from a4ps.sandbox.errors import SandboxFailure
from a4ps.sandbox.execution_result import ExecutionResult, KillReason
from a4ps.sandbox.guest_payload import GUEST_ARGV, GUEST_ENV, GUEST_INPUT_DIR, GUEST_SCRATCH_DIR
from a4ps.sandbox.guest_rootfs import GuestRootfs, usr_symlinks
from a4ps.sandbox.seccomp_filter import UnsupportedArchitecture, build_seccomp_program

log = logging.getLogger(__name__)

_JOIN_FAILED = "a4ps-sandbox: cannot join cgroup"
_JOIN_CGROUP_SCRIPT = (
    'for f in "$@"; do [ "$f" = -- ] && break; '
    f'echo $$ > "$f" || {{ echo "{_JOIN_FAILED} $f" >&2; exit 125; }}; shift; done; shift; exec "$@"'
)
# Host uids handed to concurrent runs when we are root: far above any real account.
_HOST_UID_BASE = 1_500_000_000
_HOST_UID_SLOTS = 65_536
# POSIX shared memory (multiprocessing locks) gets its own small tmpfs; the rest of /dev is read-only.
_SHM_BYTES = 16 << 20


class _HostUidPool:
    """Gives each concurrent run its own unprivileged host uid (own RLIMIT_NPROC budget)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[int] = set()

    def acquire(self) -> int:
        with self._lock:
            for slot in range(_HOST_UID_SLOTS):
                uid = _HOST_UID_BASE + slot
                if uid not in self._used:
                    self._used.add(uid)
                    return uid
        raise SandboxFailure("no free host uid for a bwrap run")

    def release(self, uid: int) -> None:
        with self._lock:
            self._used.discard(uid)


class BwrapBackend(SandboxBackend):
    """bubblewrap + seccomp + rlimits (+ cgroup v2/v1 for memory, CPU and pids when writable)."""

    name = "bwrap"

    def __init__(self, settings: Sandbox, work_dir: Path, assets_dir: Path) -> None:
        super().__init__(settings, work_dir, assets_dir)
        self._rootfs = GuestRootfs(assets_dir, work_dir)
        self._uids = _HostUidPool()
        self._binaries: dict[str, str] = {}
        self._seccomp = b""
        self._cgroups: CgroupManager | None = None
        self._cgroup_note = ""

    def prerequisites(self) -> str | None:
        needed = ["bwrap", "prlimit"] + (["setpriv"] if is_root() else [])
        for name in needed:
            path = find_binary(name)
            if path is None:
                return f"{name} not found (install bubblewrap and util-linux: .ci/install_sandbox.sh)"
            self._binaries[name] = path
        self._binaries["sh"] = find_binary("sh") or "/bin/sh"
        try:
            self._seccomp = build_seccomp_program()
        except UnsupportedArchitecture as exc:
            return str(exc)
        self._cgroups, self._cgroup_note = CgroupManager.detect()
        if self._cgroups is None:
            log.warning(
                "bwrap sandbox without a cgroup (%s): memory is capped by RLIMIT_AS, processes by "
                "RLIMIT_NPROC, CPU time is not capped",
                self._cgroup_note,
            )
        return None

    def describe(self) -> str:
        cgroup = self._cgroup_note if self._cgroups else f"no cgroup: {self._cgroup_note}"
        return f"bwrap (seccomp, {cgroup})"

    def execute(self, run_id: str, paths: RunPaths, timeout_s: float,
                cancel: threading.Event | None = None) -> ExecutionResult:
        rootfs = self._rootfs.ensure()
        cgroup: RunCgroup | None = None
        host_uid = self._uids.acquire() if is_root() else None
        opened: list[int] = []
        try:
            if self._cgroups is not None:
                cgroup = self._cgroups.create(
                    run_cgroup_name(run_id),
                    CgroupLimits(self.limits.memory_bytes, self.limits.cpu_quota, self.limits.pids),
                )
            copies: list[tuple[str, int]] = []  # (guest path, fd): contents copied in by bwrap
            guest_dirs: list[str] = []
            for host_root, guest_root in ((rootfs / "etc", "/etc"), (paths.stage_dir, GUEST_INPUT_DIR)):
                guest_dirs.append(guest_root)
                for path in sorted(host_root.rglob("*")):
                    guest_path = f"{guest_root}/{path.relative_to(host_root).as_posix()}"
                    if path.is_dir():
                        guest_dirs.append(guest_path)
                    elif path.is_file():
                        fd = os.open(path, os.O_RDONLY)
                        opened.append(fd)
                        copies.append((guest_path, fd))
            seccomp_read, seccomp_write = os.pipe()
            opened.append(seccomp_read)
            try:
                os.write(seccomp_write, self._seccomp)
            finally:
                os.close(seccomp_write)
            argv = self._argv(cgroup, host_uid, guest_dirs, copies, seccomp_read)

            def kill(proc: subprocess.Popen) -> None:
                if cgroup is not None:
                    cgroup.kill_all()

            outcome = run_bounded(
                argv,
                timeout_s=timeout_s,
                output_limit=self.limits.output_limit,
                kill=kill,
                env={},
                pass_fds=opened,
                cwd="/",
                cancel=cancel,
            )
            if outcome.returncode == 125 and outcome.stderr.startswith(_JOIN_FAILED.encode()):
                raise SandboxFailure(decode_output(outcome.stderr).strip())
            reason = outcome.kill_reason
            if reason is None and cgroup is not None and cgroup.oom_kills() > 0:
                reason = KillReason.MEMORY
            return ExecutionResult(
                backend=self.name,
                run_id=run_id,
                exit_code=outcome.returncode,
                stdout=decode_output(outcome.stdout),
                stderr=decode_output(outcome.stderr),
                stdout_truncated=outcome.stdout_truncated,
                stderr_truncated=outcome.stderr_truncated,
                killed=reason is not None,
                kill_reason=reason,
                wall_ms=outcome.wall_ms,
            )
        finally:
            for fd in opened:
                os.close(fd)
            if cgroup is not None:
                cgroup.remove()
            if host_uid is not None:
                self._uids.release(host_uid)

    def reap_stale(self, run_id: str) -> None:
        # --die-with-parent already killed the guest when its host process died; the cgroup stays.
        if self._cgroups is not None:
            self._cgroups.handle(run_cgroup_name(run_id)).remove()

    def _argv(
        self,
        cgroup: RunCgroup | None,
        host_uid: int | None,
        guest_dirs: list[str],
        copies: list[tuple[str, int]],
        seccomp_fd: int,
    ) -> list[str]:
        limits = self.limits
        argv: list[str] = []
        if cgroup is not None:
            argv += [self._binaries["sh"], "-c", _JOIN_CGROUP_SCRIPT, "a4ps-cgroup-join"]
            argv += [str(path) for path in cgroup.procs_files] + ["--"]
        if host_uid is not None:
            argv += [
                self._binaries["setpriv"],
                f"--reuid={host_uid}",
                f"--regid={host_uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        argv += [
            self._binaries["prlimit"],
            f"--as={limits.address_space(cgroup is not None)}",
            f"--nproc={limits.pids}",
            f"--nofile={limits.nofile}",
            f"--fsize={limits.tmpfs_bytes}",
            "--core=0",
            "--",
        ]
        argv += [
            self._binaries["bwrap"],
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_GID),
            "--hostname", "sandbox",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--clearenv",
        ]
        for key, value in GUEST_ENV.items():
            argv += ["--setenv", key, value]
        argv += ["--ro-bind", "/usr", "/usr"]
        for name, target in usr_symlinks().items():
            argv += ["--symlink", target, f"/{name}"]
        for directory in guest_dirs:
            argv += ["--dir", directory]
        for guest_path, fd in copies:
            argv += ["--perms", "0444", "--ro-bind-data", str(fd), guest_path]
        argv += [
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(min(_SHM_BYTES, limits.tmpfs_bytes)), "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev",
            "--size", str(limits.tmpfs_bytes), "--tmpfs", GUEST_SCRATCH_DIR,
            "--seccomp", str(seccomp_fd),
            "--chdir", GUEST_SCRATCH_DIR,
            "--remount-ro", "/",
            "--",
            *GUEST_ARGV,
        ]
        return argv
