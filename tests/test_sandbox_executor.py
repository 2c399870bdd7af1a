"""SecureCodeExecutor's contract: inputs in, results out, backend choice, refusal without a sandbox,
and the docker backend's container configuration (no engine here, so it is checked as data)."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from a4ps.config.loader import load_settings, project_root
from a4ps.sandbox import BACKEND_ORDER, SandboxUnavailable, SecureCodeExecutor
from a4ps.sandbox import bounded_process, bwrap_backend, runsc_backend
from a4ps.sandbox.backend_base import gvisor_host_pids
from a4ps.sandbox.docker_backend import DockerBackend
from a4ps.sandbox.guest_payload import GUEST_ARGV, GUEST_ENV
from a4ps.sandbox.guest_rootfs import default_assets_dir
from a4ps.sandbox.seccomp_filter import build_seccomp_program, oci_seccomp_profile


@pytest.fixture(scope="module")
def sandbox_settings():
    return load_settings(project_root() / "config" / "settings.toml").sandbox


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def auto_executor(work_dir, sandbox_settings):
    executor = SecureCodeExecutor(sandbox_settings.model_copy(update={"backend": "auto"}), work_dir)
    executor.select_backend()
    return executor


def no_docker_engine(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/a4ps-test-docker.sock")


def test_auto_picks_the_strongest_available_and_logs_why(tmp_path, sandbox_settings, monkeypatch, caplog):
    no_docker_engine(monkeypatch)
    executor = SecureCodeExecutor(sandbox_settings.model_copy(update={"backend": "auto"}), tmp_path)
    with caplog.at_level(logging.INFO, logger="a4ps.sandbox"):
        chosen = executor.select_backend()
    verdicts = executor.availability()
    assert verdicts["docker"] is not None and "Docker engine" in verdicts["docker"]
    expected = next(name for name in BACKEND_ORDER if verdicts[name] is None)
    assert chosen == expected == "runsc"  # this machine has root, cgroups and runsc installed
    assert any("sandbox backend: runsc" in r.getMessage() and "docker unavailable" in r.getMessage() for r in caplog.records)


def test_stdin_files_exit_code_and_environment(auto_executor):
    result = auto_executor.run_python(
        "import os, sys\n"
        "from pkg.helper import VALUE\n"
        "print(sys.stdin.read().upper(), VALUE, open('data/in.txt').read(), os.getcwd())\n"
        "sys.exit(3)\n",
        files={"pkg/__init__.py": "", "pkg/helper.py": "VALUE = 42\n", "data/in.txt": "payload"},
        stdin=b"from stdin",
    )
    assert result.exit_code == 3 and not result.killed and not result.ok
    assert result.stdout == "FROM STDIN 42 payload /tmp\n"
    assert result.backend == auto_executor.backend_name
    data = result.to_dict()
    assert set(data) == {"backend", "run_id", "exit_code", "stdout", "stderr", "stdout_truncated",
                         "stderr_truncated", "killed", "kill_reason", "wall_ms", "ok"}
    assert data["wall_ms"] > 0


def test_traceback_names_the_guest_file(auto_executor):
    result = auto_executor.run_python("x = 1\nraise ValueError('boom')\n")
    assert result.exit_code == 1 and not result.killed
    assert 'File "/tmp/main.py", line 2' in result.stderr and "ValueError: boom" in result.stderr


def test_exit_and_quit_builtins_work(auto_executor):
    result = auto_executor.run_python("print('a')\nexit(0)\nprint('b')\n")
    assert result.ok and result.stdout == "a\n"


@pytest.mark.parametrize("name", ["../escape.py", "/etc/passwd", "main.py", "a/../b.py", "", "./x.py"])
def test_bad_file_names_are_rejected_before_anything_runs(auto_executor, name):
    with pytest.raises(ValueError):
        auto_executor.run_python("print(1)", files={name: "x"})


def test_timeout_must_be_positive(auto_executor):
    with pytest.raises(ValueError):
        auto_executor.run_python("print(1)", timeout_s=0)


def test_no_backend_means_refusal_not_a_plain_subprocess(tmp_path, sandbox_settings, monkeypatch):
    no_docker_engine(monkeypatch)
    monkeypatch.setattr(runsc_backend, "find_binary", lambda name: None)
    monkeypatch.setattr(bwrap_backend, "find_binary", lambda name: None)
    started: list = []
    real_popen = subprocess.Popen

    def spying_popen(*args, **kwargs):
        started.append(args)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(bounded_process.subprocess, "Popen", spying_popen)
    executor = SecureCodeExecutor(sandbox_settings.model_copy(update={"backend": "auto"}), tmp_path)
    with pytest.raises(SandboxUnavailable) as caught:
        executor.run_python("print('should never run')")
    message = str(caught.value)
    assert "docker unavailable" in message and "runsc unavailable" in message and "bwrap unavailable" in message
    assert started == []


def test_configured_backend_that_is_missing_is_not_replaced(tmp_path, sandbox_settings, monkeypatch):
    no_docker_engine(monkeypatch)
    executor = SecureCodeExecutor(sandbox_settings.model_copy(update={"backend": "docker"}), tmp_path)
    with pytest.raises(SandboxUnavailable, match="docker"):
        executor.run_python("print(1)")


def docker_create_request(kwargs: dict) -> dict:
    """The JSON body the docker SDK would POST to /containers/create for these kwargs (no engine needed)."""
    from docker import APIClient
    from docker.models.containers import _create_container_args

    kwargs = {k: v for k, v in kwargs.items() if k != "detach"} | {"version": "1.43"}
    args = _create_container_args(kwargs)  # the SDK's own validation: unknown or ill-typed options raise
    args.pop("name")
    return APIClient(base_url="unix:///nonexistent", version="1.43").create_container_config(**args)


def test_docker_container_config_is_a_sandbox(tmp_path, sandbox_settings):
    backend = DockerBackend(sandbox_settings, tmp_path, default_assets_dir())
    body = docker_create_request(backend.container_kwargs("abc123", tmp_path / "stage"))
    host = body["HostConfig"]
    memory = sandbox_settings.memory_mb << 20
    assert host["Runtime"] == "runsc"
    assert body["Image"] == sandbox_settings.docker_image
    assert host["NetworkMode"] == "none" and body["NetworkDisabled"] is True
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={sandbox_settings.tmpfs_mb << 20},mode=1777"}
    assert host["Memory"] == memory and host["MemorySwap"] == memory  # equal: no swap
    assert host["NanoCpus"] == int(sandbox_settings.cpu_quota * 1e9)
    assert host["PidsLimit"] == gvisor_host_pids(sandbox_settings.pids_limit)
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
    assert ulimits["nproc"] == (sandbox_settings.pids_limit,) * 2
    assert ulimits["nofile"][1] <= 1024 and ulimits["core"] == (0, 0)
    assert ulimits["fsize"] == (sandbox_settings.tmpfs_mb << 20,) * 2
    assert host["CapDrop"] == ["ALL"] and not host.get("Privileged") and not host.get("CapAdd")
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert body["User"] == "1000:1000"
    assert sorted(body["Env"]) == sorted(f"{k}={v}" for k, v in GUEST_ENV.items())
    assert body["Cmd"] == GUEST_ARGV and body["Entrypoint"] == []
    assert host["Binds"] == [f"{tmp_path / 'stage'}:/sandbox:ro"]
    assert host["LogConfig"]["Type"] == "none"
    assert not body["OpenStdin"] and not body["Tty"]


def test_docker_without_engine_is_reported_unavailable(tmp_path, sandbox_settings, monkeypatch):
    no_docker_engine(monkeypatch)
    reason = DockerBackend(sandbox_settings, tmp_path, default_assets_dir()).prerequisites()
    assert reason is not None and "no Docker engine answers" in reason


def test_dockerfile_builds_the_guest_the_other_backends_use():
    dockerfile = (default_assets_dir() / "Dockerfile").read_text()
    assert "USER 1000:1000" in dockerfile and "python3" in dockerfile
    for name in ("passwd", "group"):
        assert (default_assets_dir() / "rootfs" / "etc" / name).is_file()


def test_seccomp_program_is_well_formed():
    program = build_seccomp_program("x86_64")
    assert len(program) % 8 == 0 and 0 < len(program) // 8 < 4096
    records = [struct.unpack("<HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    assert records[0] == (0x20, 0, 0, 4)  # load arch
    assert records[1][3] == 0xC000003E  # AUDIT_ARCH_X86_64
    assert records[2] == (0x06, 0, 0, 0x80000000)  # foreign ABI: kill the process
    assert records[-1] == (0x06, 0, 0, 0x7FFF0000)  # default: allow
    for index, (code, jt, jf, _) in enumerate(records):
        if code & 0x07 == 0x05:  # jumps must land inside the program
            assert index + 1 + max(jt, jf) < len(records)
    assert len(build_seccomp_program("aarch64")) % 8 == 0
    profile = oci_seccomp_profile("x86_64")
    denied = profile["syscalls"][0]["names"]
    assert {"mount", "unshare", "setns", "ptrace", "bpf", "keyctl"} <= set(denied)


def test_concurrent_runs_from_many_threads_all_complete(auto_executor, work_dir):
    results = []
    lock = threading.Lock()

    def one(i: int) -> None:
        result = auto_executor.run_python(f"print({i} * 2)")
        with lock:
            results.append((i, result))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.stdout for _, r in results) == sorted(f"{i * 2}\n" for i in range(4))
    assert all(r.ok for _, r in results)
    assert len({r.run_id for _, r in results}) == 4
    assert list((work_dir / "runs").iterdir()) == []  # every run's private dir was removed


_DYING_HOST = """
import sys
from a4ps.config.loader import load_settings, project_root
from a4ps.sandbox import SecureCodeExecutor
settings = load_settings(project_root() / "config" / "settings.toml").sandbox.model_copy(update={"backend": sys.argv[1]})
executor = SecureCodeExecutor(settings, sys.argv[2])
executor.select_backend()
print("ready", flush=True)
executor.run_python("import time\\nprint('guest up', flush=True)\\ntime.sleep(120)", timeout_s=120)
"""


def _leftovers(needle: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                pass
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [f"{root}/{d}" for d in dirs if needle in d]
    return found


@pytest.mark.parametrize("backend", ["runsc", "bwrap"])
def test_runs_orphaned_by_a_killed_host_are_reaped_on_next_start(tmp_path, sandbox_settings, backend):
    """SIGKILL of the host process mid-run leaves a container/cgroup; the next executor removes them."""
    host = subprocess.Popen([sys.executable, "-c", _DYING_HOST, backend, str(tmp_path)],
                            cwd=project_root(), stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout.readline().strip() == "ready"
        runs = tmp_path / "runs"
        deadline = time.monotonic() + 30
        run_id = None
        while time.monotonic() < deadline and run_id is None:
            for run_dir in runs.iterdir():
                if _leftovers(f"a4ps-sbx-{run_dir.name}"):
                    run_id = run_dir.name
            time.sleep(0.05)
        assert run_id is not None, "the guest run never started"
        time.sleep(0.5)
    finally:
        host.kill()
        host.wait()
    assert _leftovers(f"a4ps-sbx-{run_id}")  # the dead host left its run's cgroup behind
    executor = SecureCodeExecutor(sandbox_settings.model_copy(update={"backend": backend}), tmp_path)
    executor.select_backend()
    assert _leftovers(run_id) == []  # no container process, no cgroup
    assert not (tmp_path / "runs" / run_id).exists()
