"""Docker backend: one throwaway container per run under the runsc (gVisor) runtime.

Used only when a Docker engine answers (DOCKER_HOST, as the docker CLI) and has the runsc runtime
registered. The image is made from this host's Python (guest_image: no registry needed) when it is
missing or stale. The engine must be local: the staged inputs are bind-mounted read-only from this
host. Each run: create, attach, start, wait(timeout), kill on timeout, output overflow or cancel, and
always force-remove the container, also when create or start fails half-way.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from a4ps.config.schema import Sandbox
from a4ps.sandbox.backend_base import (
    gvisor_host_pids,
    SANDBOX_GID,
    SANDBOX_UID,
    RunPaths,
    SandboxBackend,
    decode_output,
)
from a4ps.sandbox.bounded_process import CANCEL_POLL_S
from a4ps.sandbox.errors import SandboxFailure
from a4ps.sandbox.execution_result import ExecutionResult, KillReason
from a4ps.sandbox.guest_payload import GUEST_ARGV, GUEST_ENV, GUEST_INPUT_DIR, GUEST_SCRATCH_DIR
from a4ps.sandbox.seccomp_filter import UnsupportedArchitecture, oci_seccomp_profile

log = logging.getLogger(__name__)

_RUNTIME = "runsc"
_RUN_LABEL = "a4ps.sandbox.run"
_PING_TIMEOUT_S = 3
_API_TIMEOUT_S = 60
_READER_JOIN_S = 5.0
_OOM_FLAG_GRACE_S = 1.0


def container_name(run_id: str) -> str:
    """The container of one run (also how a stale one is found again)."""
    return f"a4ps-{run_id}"


class DockerBackend(SandboxBackend):
    """docker run --runtime=runsc with no network, read-only root and the configured limits."""

    name = "docker"

    def __init__(self, settings: Sandbox, work_dir: Path, assets_dir: Path) -> None:
        super().__init__(settings, work_dir, assets_dir)
        self._client: Any = None
        self._runtime_args: list[str] = []

    def prerequisites(self) -> str | None:
        try:
            import docker
            import requests
        except ImportError:
            return "docker SDK not installed"
        failures = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
        try:
            client = docker.from_env(timeout=_PING_TIMEOUT_S)
        except failures as exc:
            return f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})"
        try:
            client.ping()
            runtimes = client.info().get("Runtimes") or {}
        except failures as exc:
            return f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})"
        finally:
            client.close()
        if _RUNTIME not in runtimes:
            return f"Docker engine has no '{_RUNTIME}' runtime (have: {', '.join(sorted(runtimes)) or 'none'})"
        self._runtime_args = list((runtimes[_RUNTIME] or {}).get("runtimeArgs") or [])
        if "--oci-seccomp" not in self._runtime_args:
            return (f"the engine's {_RUNTIME} runtime lacks runtimeArgs --oci-seccomp, so gVisor would ignore the"
                    f" sandbox's seccomp profile (have: {self._runtime_args}; register it as .ci/dockerd.sh does)")
        try:
            oci_seccomp_profile()
        except UnsupportedArchitecture as exc:
            return str(exc)
        self._client = docker.from_env(timeout=_API_TIMEOUT_S)
        return self._ensure_image()

    def _ensure_image(self) -> str | None:
        """None when the image is there and current; builds it from this host when missing or stale.

        An image under the configured name without our digest label is someone's own: used as it is.
        """
        import docker
        import requests

        from a4ps.sandbox import guest_image

        failures = (docker.errors.DockerException, requests.exceptions.RequestException, OSError, guest_image.GuestImageError)
        image = self.settings.docker_image
        try:
            have = self._client.images.get(image).labels.get(guest_image.DIGEST_LABEL)
            if have is None:
                return None
        except docker.errors.ImageNotFound:
            have = None
        except failures as exc:
            return f"cannot inspect image {image}: {exc}"
        try:
            spec = guest_image.collect(self.assets_dir, self.work_dir)
            if have == spec.digest:
                return None
            log.info("sandbox image %s %s; building it from this host's Python", image, "is stale" if have else "is missing")
            guest_image.build_image(self._client, image, spec, tmp_dir=self.work_dir)
        except failures as exc:
            return f"building image {image} failed: {exc}"
        return None

    def describe(self) -> str:
        return f"docker --runtime={_RUNTIME}, image {self.settings.docker_image}"

    def container_kwargs(self, run_id: str, stage_dir: Path) -> dict[str, Any]:
        """Arguments for `client.containers.create` that make the container a sandbox."""
        from docker.types import LogConfig, Ulimit

        limits = self.limits
        as_bytes = limits.address_space(cgroup_enforced=True)
        return {
            "image": self.settings.docker_image,
            "command": list(GUEST_ARGV),
            "entrypoint": [],
            "name": container_name(run_id),
            "labels": {_RUN_LABEL: run_id},
            "runtime": _RUNTIME,
            "user": f"{SANDBOX_UID}:{SANDBOX_GID}",
            "environment": dict(GUEST_ENV),
            "working_dir": GUEST_SCRATCH_DIR,
            "hostname": "sandbox",
            "network_mode": "none",
            "network_disabled": True,
            "read_only": True,
            "tmpfs": {GUEST_SCRATCH_DIR: f"rw,nosuid,nodev,size={limits.tmpfs_bytes},mode=1777"},
            "volumes": {str(stage_dir): {"bind": GUEST_INPUT_DIR, "mode": "ro"}},
            "mem_limit": limits.memory_bytes,
            "memswap_limit": limits.memory_bytes,
            "nano_cpus": int(limits.cpu_quota * 1_000_000_000),
            # --pids-limit under runsc counts gVisor's own host threads (sentry, gofer, ptrace stubs):
            # ~40 before the guest runs, so print(1) fails below 48, and ~18 more per guest process.
            # When this cgroup trips, the whole sandbox dies (exit 2, output lost), so it only
            # bounds the host, with gvisor_host_pids()'s headroom (>= 512); the guest's processes
            # are capped by RLIMIT_NPROC (ulimit nproc below), where a fork bomb gets EAGAIN.
            "pids_limit": gvisor_host_pids(limits.pids),
            "ulimits": [
                Ulimit(name="nproc", soft=limits.pids, hard=limits.pids),
                Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
                Ulimit(name="fsize", soft=limits.tmpfs_bytes, hard=limits.tmpfs_bytes),
                Ulimit(name="as", soft=as_bytes, hard=as_bytes),
                Ulimit(name="core", soft=0, hard=0),
            ],
            "cap_drop": ["ALL"],
            # The runsc backend's filter, enforced inside gVisor (the runtime runs with --oci-seccomp).
            "security_opt": ["no-new-privileges:true", f"seccomp={json.dumps(oci_seccomp_profile())}"],
            "ipc_mode": "private",
            "privileged": False,
            "log_config": LogConfig(type=LogConfig.types.NONE),
            "stdin_open": False,
            "tty": False,
            "detach": True,
        }

    def reap_stale(self, run_id: str) -> None:
        self._remove(run_id)

    def _remove(self, run_id: str) -> None:
        """Force-remove the run's container (kills it first) if it exists; found by name, so this
        also covers a create that reached the engine but whose reply never came back."""
        import docker
        import requests

        try:
            self._client.api.remove_container(container_name(run_id), force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxFailure(f"docker rm -f {container_name(run_id)} failed: {exc}") from exc

    def execute(self, run_id: str, paths: RunPaths, timeout_s: float,
                cancel: threading.Event | None = None) -> ExecutionResult:
        import docker
        import requests

        try:
            result = self._execute(run_id, paths, timeout_s, cancel)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            self._remove_after_failure(run_id)
            raise SandboxFailure(f"docker run {run_id} failed: {exc}{self._start_hint(exc)}") from exc
        except BaseException:
            self._remove_after_failure(run_id)
            raise
        self._remove(run_id)
        return result

    @staticmethod
    def _oom_killed(container: Any, exit_code: int) -> bool:
        """The engine's OOMKilled flag. It comes from a separate cgroup event that may land a few ms
        after the exit status (measured 1-5 ms; once it was not yet set), so a SIGKILL exit (137)
        waits a little for it."""
        deadline = time.monotonic() + _OOM_FLAG_GRACE_S
        while True:
            container.reload()
            if container.attrs.get("State", {}).get("OOMKilled"):
                return True
            if exit_code != 128 + signal.SIGKILL or time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _kill(self, container: Any, run_id: str) -> None:
        """SIGKILL the guest (under runsc the whole sandbox goes with it); fine if it already exited."""
        import docker

        try:
            container.kill()
        except docker.errors.APIError as exc:  # exited between the decision and the kill
            log.debug("docker kill %s: %s", run_id, exc)

    def _remove_after_failure(self, run_id: str) -> None:
        """Remove the container while another error is on its way up (that one is what the caller sees)."""
        try:
            self._remove(run_id)
        except SandboxFailure as exc:
            log.warning("%s", exc)

    def _start_hint(self, exc: Exception) -> str:
        """gVisor #10704: without runtimeArgs --network=none this runsc fails every container."""
        if "network" in str(exc) and "--network=none" not in self._runtime_args:
            return (f" (the engine's {_RUNTIME} runtime has runtimeArgs {self._runtime_args}; register it with"
                    ' "runtimeArgs": ["--network=none"] in daemon.json, see .ci/dockerd.sh)')
        return ""

    def _execute(self, run_id: str, paths: RunPaths, timeout_s: float,
                 cancel: threading.Event | None) -> ExecutionResult:
        """Create, attach, start; then one thread drains the output, one waits for the exit, and this
        one enforces the deadline and watches `cancel`. The engine does not answer a kill while the
        attach stream is not drained (measured: the kill request hangs), so killing is never left to
        the reader."""
        started = time.monotonic()
        container = self._client.containers.create(**self.container_kwargs(run_id, paths.stage_dir))
        limit = self.limits.output_limit
        buffers = {"stdout": bytearray(), "stderr": bytearray()}
        truncated = {"stdout": False, "stderr": False}
        wake = threading.Event()  # the guest exited, or its output passed the cap
        exit_status: list[int] = []
        errors: list[BaseException] = []  # from the threads, re-raised on this one

        stream = container.attach(stdout=True, stderr=True, stream=True, demux=True, logs=False)

        def read() -> None:
            """Copy the attach stream into the capped buffers, draining (and dropping) past the cap."""
            try:
                for out_chunk, err_chunk in stream:
                    for key, chunk in (("stdout", out_chunk), ("stderr", err_chunk)):
                        if not chunk:
                            continue
                        room = limit - len(buffers[key])
                        if len(chunk) > room:
                            buffers[key] += chunk[: max(room, 0)]
                            truncated[key] = True
                            wake.set()
                        else:
                            buffers[key] += chunk
            except BaseException as exc:  # noqa: BLE001 - handed to the run's thread
                errors.append(exc)

        def wait() -> None:
            try:
                exit_status.append(container.wait(timeout=timeout_s + _API_TIMEOUT_S)["StatusCode"])
            except BaseException as exc:  # noqa: BLE001 - handed to the run's thread
                errors.append(exc)
            finally:
                wake.set()

        reader = threading.Thread(target=read, name=f"docker-output-{run_id}", daemon=True)
        waiter = threading.Thread(target=wait, name=f"docker-wait-{run_id}", daemon=True)
        reader.start()
        reason: str | None = None
        try:  # on any exception the caller force-removes the container, which kills it
            container.start()
            waiter.start()
            woke = _wait_or_cancel(wake, timeout_s, cancel)
            killed_at = None
            if not exit_status:
                if any(truncated.values()):
                    reason = KillReason.OUTPUT_LIMIT
                elif cancel is not None and cancel.is_set():
                    reason = KillReason.CANCELLED
                elif not woke:
                    reason = KillReason.TIMEOUT
                killed_at = time.monotonic()
                self._kill(container, run_id)  # also when the wait itself failed (raised below)
            waiter.join(_API_TIMEOUT_S)
            if killed_at is not None:
                # The engine tears the gVisor sandbox down; with a fork bomb's processes on a loaded machine
                # that has taken from ~1 s to ~33 s (measured), so the figure is logged where it is seen.
                log.info("docker run %s: %s; exit status %.0f ms after the kill", run_id, reason or "wait failed",
                         (time.monotonic() - killed_at) * 1000.0)
            if waiter.is_alive():
                raise SandboxFailure(f"docker run {run_id}: no exit status {_API_TIMEOUT_S} s after the kill")
            reader.join(_READER_JOIN_S)
            if reader.is_alive():
                raise SandboxFailure(f"docker run {run_id}: output still streaming {_READER_JOIN_S:.0f} s after the exit")
        finally:
            stream.close()
            reader.join(_READER_JOIN_S)
        if errors:
            raise SandboxFailure(f"docker run {run_id}: {errors[0]!r}") from errors[0]
        exit_code = exit_status[0]
        if reason is None and any(truncated.values()):  # the cap was passed just as the guest exited
            reason = KillReason.OUTPUT_LIMIT
        if reason is None and self._oom_killed(container, exit_code):
            reason = KillReason.MEMORY
        return ExecutionResult(
            backend=self.name,
            run_id=run_id,
            exit_code=exit_code,
            stdout=decode_output(bytes(buffers["stdout"])),
            stderr=decode_output(bytes(buffers["stderr"])),
            stdout_truncated=truncated["stdout"],
            stderr_truncated=truncated["stderr"],
            killed=reason is not None,
            kill_reason=reason,
            wall_ms=(time.monotonic() - started) * 1000.0,
        )


def _wait_or_cancel(wake: threading.Event, timeout_s: float, cancel: threading.Event | None) -> bool:
    """Wait for `wake` up to timeout_s, or until `cancel` is set (looked at every CANCEL_POLL_S)."""
    if cancel is None:
        return wake.wait(timeout_s)
    deadline = time.monotonic() + timeout_s
    while not cancel.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return wake.is_set()
        if wake.wait(min(remaining, CANCEL_POLL_S)):
            return True
    return wake.is_set()
