"""gVisor (runsc) backend driven directly with a generated OCI bundle; needs root and cgroups.

Every run gets a unique container id and its own cgroup, created and limited by us (runsc joins an
existing cgroup without taking ownership), so the OOM counter survives the run and cleanup is ours:
the container is always killed and force-deleted and the cgroup removed, on timeout too (killing
the runsc client alone leaves the sandbox running).
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from pathlib import Path
from typing import Any

from a4ps.config.schema import Sandbox
from a4ps.sandbox.backend_base import (
    gvisor_host_pids,
    SANDBOX_GID,
    SANDBOX_UID,
    SYSTEM_PATH,
    RunPaths,
    SandboxBackend,
    decode_output,
    find_binary,
    is_root,
    run_cgroup_name,
)
from a4ps.sandbox.bounded_process import run_bounded
from a4ps.sandbox.cgroup_limits import CgroupLimits, CgroupManager, RunCgroup
from a4ps.sandbox.execution_result import ExecutionResult, KillReason
from a4ps.sandbox.guest_payload import GUEST_ARGV, GUEST_ENV, GUEST_INPUT_DIR, GUEST_SCRATCH_DIR
from a4ps.sandbox.guest_rootfs import GuestRootfs
from a4ps.sandbox.seccomp_filter import UnsupportedArchitecture, oci_seccomp_profile

log = logging.getLogger(__name__)

_CONTROL_TIMEOUT_S = 15.0
_CPU_PERIOD_US = 100_000


class RunscBackend(SandboxBackend):
    """runsc --network=none run --bundle <generated> <unique id>."""

    name = "runsc"

    def __init__(self, settings: Sandbox, work_dir: Path, assets_dir: Path) -> None:
        super().__init__(settings, work_dir, assets_dir)
        self._rootfs = GuestRootfs(assets_dir, work_dir)
        self._state_dir = work_dir / "runsc-state"
        self._runsc = ""
        self._cgroups: CgroupManager | None = None
        self._cgroup_note = ""

    def prerequisites(self) -> str | None:
        runsc = find_binary("runsc")
        if runsc is None:
            return "runsc not found (install gVisor: .ci/install_sandbox.sh)"
        if not is_root():
            return "runsc needs root (rootless gVisor cannot apply cgroup limits)"
        try:
            oci_seccomp_profile()
        except UnsupportedArchitecture as exc:
            return str(exc)
        self._cgroups, self._cgroup_note = CgroupManager.detect()
        if self._cgroups is None:
            return f"runsc needs writable cgroups for its limits: {self._cgroup_note}"
        self._runsc = runsc
        self._state_dir.mkdir(parents=True, exist_ok=True)
        return None

    def describe(self) -> str:
        return f"runsc (gVisor ptrace, {self._cgroup_note})"

    def _global_flags(self) -> list[str]:
        return [self._runsc, "--root", str(self._state_dir), "--network=none", "--platform=ptrace", "--host-uds=none", "--oci-seccomp"]

    def oci_config(self, rootfs: Path, stage_dir: Path, cgroups_path: str) -> dict[str, Any]:
        """The OCI runtime spec for one run (read-only root, tmpfs scratch, no caps, uid 1000)."""
        limits = self.limits
        rlimits = {
            "RLIMIT_NOFILE": limits.nofile,
            "RLIMIT_NPROC": limits.pids,
            "RLIMIT_FSIZE": limits.tmpfs_bytes,
            "RLIMIT_AS": limits.address_space(cgroup_enforced=True),
            "RLIMIT_CORE": 0,
        }
        no_caps: dict[str, list[str]] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": SANDBOX_UID, "gid": SANDBOX_GID, "additionalGids": []},
                "args": list(GUEST_ARGV),
                "env": [f"{k}={v}" for k, v in GUEST_ENV.items()],
                "cwd": GUEST_SCRATCH_DIR,
                "capabilities": no_caps,
                "rlimits": [{"type": k, "hard": v, "soft": v} for k, v in rlimits.items()],
                "noNewPrivileges": True,
            },
            "root": {"path": str(rootfs), "readonly": True},
            "hostname": "sandbox",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {
                    "destination": GUEST_SCRATCH_DIR,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "nodev", f"size={limits.tmpfs_bytes}", "mode=1777"],
                },
                {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro", "nosuid", "nodev"]},
                {"destination": GUEST_INPUT_DIR, "type": "bind", "source": str(stage_dir), "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]},
            ],
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                "resources": {
                    "memory": {"limit": limits.memory_bytes, "swap": limits.memory_bytes},
                    "cpu": {"quota": int(limits.cpu_quota * _CPU_PERIOD_US), "period": _CPU_PERIOD_US},
                    "pids": {"limit": gvisor_host_pids(limits.pids)},
                },
                "cgroupsPath": cgroups_path,
                "seccomp": oci_seccomp_profile(),
            },
        }

    def _control(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self._global_flags(), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": SYSTEM_PATH},
            timeout=_CONTROL_TIMEOUT_S,
            check=False,
        )

    def execute(self, run_id: str, paths: RunPaths, timeout_s: float,
                cancel: threading.Event | None = None) -> ExecutionResult:
        assert self._cgroups is not None, "prerequisites() must pass first"
        rootfs = self._rootfs.ensure()
        container_id = f"a4ps-{run_id}"
        cgroup: RunCgroup | None = None
        try:
            cgroup = self._cgroups.create(
                run_cgroup_name(run_id),
                CgroupLimits(self.limits.memory_bytes, self.limits.cpu_quota, gvisor_host_pids(self.limits.pids)),
            )
            bundle = paths.run_dir / "bundle"
            bundle.mkdir(mode=0o700)
            config = self.oci_config(rootfs, paths.stage_dir, cgroup.runtime_path)
            (bundle / "config.json").write_text(json.dumps(config), encoding="utf-8")
            run_cgroup = cgroup

            def kill(proc: subprocess.Popen) -> None:
                self._control("kill", "--all", container_id, "KILL")
                run_cgroup.kill_all()

            outcome = run_bounded(
                [*self._global_flags(), "run", "--bundle", str(bundle), container_id],
                timeout_s=timeout_s,
                output_limit=self.limits.output_limit,
                kill=kill,
                env={"PATH": SYSTEM_PATH},
                cwd=str(bundle),
                cancel=cancel,
            )
            reason = outcome.kill_reason
            if reason is None and cgroup.oom_kills() > 0:
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
            self._teardown(container_id, cgroup)

    def reap_stale(self, run_id: str) -> None:
        assert self._cgroups is not None, "prerequisites() must pass first"
        container_id = f"a4ps-{run_id}"
        self._control("kill", "--all", container_id, "KILL")  # still running: nobody waits on it
        self._teardown(container_id, self._cgroups.handle(run_cgroup_name(run_id)))

    def _teardown(self, container_id: str, cgroup: RunCgroup | None) -> None:
        """Kill and force-delete the container, then remove its cgroup; each step runs even if one fails."""
        try:
            deleted = self._control("delete", "--force", container_id)
            if deleted.returncode != 0 and b"does not exist" not in deleted.stderr and b"not found" not in deleted.stderr:
                log.warning("runsc delete %s: %s", container_id, decode_output(deleted.stderr).strip())
        except subprocess.TimeoutExpired:
            log.warning("runsc delete %s timed out; killing its cgroup", container_id)
        finally:
            if cgroup is not None:
                cgroup.remove()
