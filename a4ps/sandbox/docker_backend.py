"""Docker backend: one throwaway container per run under the runsc (gVisor) runtime.

Used only when a Docker engine answers and has the runsc runtime registered; the image is built
from the project's sandbox/Dockerfile when missing. The engine must be local: the staged inputs are
bind-mounted read-only from this host.
"""

from __future__ import annotations

import logging
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
from a4ps.sandbox.errors import SandboxFailure
from a4ps.sandbox.execution_result import ExecutionResult, KillReason
from a4ps.sandbox.guest_payload import GUEST_ARGV, GUEST_ENV, GUEST_INPUT_DIR, GUEST_SCRATCH_DIR

log = logging.getLogger(__name__)

_RUNTIME = "runsc"
_PING_TIMEOUT_S = 3
_API_TIMEOUT_S = 60
_READER_JOIN_S = 5.0


class DockerBackend(SandboxBackend):
    """docker run --runtime=runsc with no network, read-only root and the configured limits."""

    name = "docker"

    def __init__(self, settings: Sandbox, work_dir: Path, assets_dir: Path) -> None:
        super().__init__(settings, work_dir, assets_dir)
        self._client: Any = None

    def prerequisites(self) -> str | None:
        try:
            import docker
            import requests
        except ImportError:
            return "docker SDK not installed"
        failures = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
        try:
            client = docker.from_env(timeout=_PING_TIMEOUT_S)
            client.ping()
        except failures as exc:
            return f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})"
        try:
            runtimes = client.info().get("Runtimes") or {}
        except failures as exc:
            return f"Docker engine info failed: {exc}"
        if _RUNTIME not in runtimes:
            return f"Docker engine has no '{_RUNTIME}' runtime (have: {', '.join(sorted(runtimes)) or 'none'})"
        client.close()
        self._client = docker.from_env(timeout=_API_TIMEOUT_S)
        return self._ensure_image()

    def _ensure_image(self) -> str | None:
        import docker
        import requests

        failures = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
        image = self.settings.docker_image
        try:
            self._client.images.get(image)
            return None
        except docker.errors.ImageNotFound:
            pass
        except failures as exc:
            return f"cannot inspect image {image}: {exc}"
        dockerfile = self.assets_dir / "Dockerfile"
        if not dockerfile.is_file():
            return f"image {image} missing and no Dockerfile at {dockerfile}"
        log.info("building sandbox image %s from %s (first use)", image, dockerfile)
        try:
            self._client.images.build(path=str(self.assets_dir), dockerfile="Dockerfile", tag=image, rm=True, pull=True)
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
            "name": f"a4ps-{run_id}",
            "labels": {"a4ps.sandbox.run": run_id},
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
            "pids_limit": gvisor_host_pids(limits.pids),
            "ulimits": [
                Ulimit(name="nproc", soft=limits.pids, hard=limits.pids),
                Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
                Ulimit(name="fsize", soft=limits.tmpfs_bytes, hard=limits.tmpfs_bytes),
                Ulimit(name="as", soft=as_bytes, hard=as_bytes),
                Ulimit(name="core", soft=0, hard=0),
            ],
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "ipc_mode": "private",
            "privileged": False,
            "log_config": LogConfig(type=LogConfig.types.NONE),
            "stdin_open": False,
            "tty": False,
            "detach": True,
        }

    def reap_stale(self, run_id: str) -> None:
        import docker

        try:
            self._client.containers.get(f"a4ps-{run_id}").remove(force=True)
        except docker.errors.NotFound:
            pass

    def execute(self, run_id: str, paths: RunPaths, timeout_s: float) -> ExecutionResult:
        import docker

        try:
            return self._execute(run_id, paths, timeout_s)
        except docker.errors.DockerException as exc:
            raise SandboxFailure(f"docker run {run_id} failed: {exc}") from exc

    def _execute(self, run_id: str, paths: RunPaths, timeout_s: float) -> ExecutionResult:
        import docker
        import requests

        started = time.monotonic()
        container = self._client.containers.create(**self.container_kwargs(run_id, paths.stage_dir))
        limit = self.limits.output_limit
        buffers = {"stdout": bytearray(), "stderr": bytearray()}
        truncated = {"stdout": False, "stderr": False}
        reason_lock = threading.Lock()
        reason: list[str] = []

        def kill(why: str) -> None:
            with reason_lock:
                if reason:
                    return
                reason.append(why)
            try:
                container.kill()
            except docker.errors.APIError as exc:  # already exited between the check and the kill
                log.debug("docker kill %s: %s", run_id, exc)

        try:
            stream = container.attach(stdout=True, stderr=True, stream=True, demux=True, logs=True)

            def read() -> None:
                for out_chunk, err_chunk in stream:
                    for key, chunk in (("stdout", out_chunk), ("stderr", err_chunk)):
                        if not chunk:
                            continue
                        room = limit - len(buffers[key])
                        if len(chunk) > room:
                            buffers[key] += chunk[: max(room, 0)]
                            truncated[key] = True
                            kill(KillReason.OUTPUT_LIMIT)
                        else:
                            buffers[key] += chunk

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            container.start()
            exit_code: int | None = None
            try:
                exit_code = container.wait(timeout=timeout_s)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):  # wait ran out
                kill(KillReason.TIMEOUT)
                exit_code = container.wait(timeout=_API_TIMEOUT_S)["StatusCode"]
            reader.join(_READER_JOIN_S)
            stream.close()
            container.reload()
            if not reason and container.attrs.get("State", {}).get("OOMKilled"):
                reason.append(KillReason.MEMORY)
        finally:
            try:
                container.remove(force=True)
            except docker.errors.APIError as exc:
                log.warning("docker remove %s failed: %s", run_id, exc)
        return ExecutionResult(
            backend=self.name,
            run_id=run_id,
            exit_code=exit_code,
            stdout=decode_output(bytes(buffers["stdout"])),
            stderr=decode_output(bytes(buffers["stderr"])),
            stdout_truncated=truncated["stdout"],
            stderr_truncated=truncated["stderr"],
            killed=bool(reason),
            kill_reason=reason[0] if reason else None,
            wall_ms=(time.monotonic() - started) * 1000.0,
        )
