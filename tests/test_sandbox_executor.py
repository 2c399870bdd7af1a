"""SecureCodeExecutor's contract on every backend: inputs in, results out, backend choice, refusal
without a sandbox; the docker backend's container request (checked as data, no engine needed), its
image made from this host's Python, and its lifecycle against a real engine (DOCKER_HOST): skipped
locally without one, failed in CI (tests/support/docker_engine.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from a4ps.config.loader import load_settings, project_root
from a4ps.sandbox import BACKEND_ORDER, KillReason, SandboxFailure, SandboxUnavailable, SecureCodeExecutor
from a4ps.sandbox import guest_image
from a4ps.sandbox import bounded_process, bwrap_backend, runsc_backend
from a4ps.sandbox.backend_base import gvisor_host_pids
from a4ps.sandbox.docker_backend import DockerBackend
from a4ps.sandbox.guest_payload import GUEST_ARGV, GUEST_ENV
from a4ps.sandbox.guest_rootfs import default_assets_dir
from a4ps.sandbox.seccomp_filter import build_seccomp_program, oci_seccomp_profile
from tests.support import docker_engine


@pytest.fixture(scope="module")
def sandbox_settings():
    return load_settings(project_root() / "config" / "settings.toml").sandbox


@pytest.fixture(scope="module")
def executors(tmp_path_factory, sandbox_settings):
    """One executor (and its work dir) per backend for the module; each probes its backend once."""
    made: dict[str, tuple[SecureCodeExecutor, Path, str | None]] = {}

    def get(name: str) -> tuple[SecureCodeExecutor, Path, str | None]:
        if name not in made:
            work_dir = tmp_path_factory.mktemp(f"work-{name}")
            executor = SecureCodeExecutor(sandbox_settings.model_copy(update={"backend": name}), work_dir)
            try:
                executor.select_backend()
                made[name] = (executor, work_dir, None)
            except SandboxUnavailable as exc:
                made[name] = (executor, work_dir, str(exc))
        return made[name]

    return get


def usable(executors, name: str) -> tuple[SecureCodeExecutor, Path]:
    """The backend's executor; docker may be absent (skip locally, fail in CI), the others may not."""
    executor, work_dir, unavailable = executors(name)
    if unavailable:
        if name == "docker":
            docker_engine.docker_unavailable(unavailable)
        pytest.fail(f"{name} must be available here: {unavailable}")
    return executor, work_dir


@pytest.fixture(params=BACKEND_ORDER)
def executor(request, executors) -> SecureCodeExecutor:
    return usable(executors, request.param)[0]


@pytest.fixture
def docker_executor(executors) -> SecureCodeExecutor:
    return usable(executors, "docker")[0]


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


def test_stdin_files_exit_code_and_environment(executor):
    result = executor.run_python(
        "import os, sys\n"
        "from pkg.helper import VALUE\n"
        "print(sys.stdin.read().upper(), VALUE, open('data/in.txt').read(), os.getcwd())\n"
        "sys.exit(3)\n",
        files={"pkg/__init__.py": "", "pkg/helper.py": "VALUE = 42\n", "data/in.txt": "payload"},
        stdin=b"from stdin",
    )
    assert result.exit_code == 3 and not result.killed and not result.ok
    assert result.stdout == "FROM STDIN 42 payload /tmp\n"
    assert result.backend == executor.backend_name
    data = result.to_dict()
    assert set(data) == {"backend", "run_id", "exit_code", "stdout", "stderr", "stdout_truncated",
                         "stderr_truncated", "killed", "kill_reason", "wall_ms", "ok"}
    assert data["wall_ms"] > 0


def test_traceback_names_the_guest_file(executor):
    result = executor.run_python("x = 1\nraise ValueError('boom')\n")
    assert result.exit_code == 1 and not result.killed
    assert 'File "/tmp/main.py", line 2' in result.stderr and "ValueError: boom" in result.stderr


def test_exit_and_quit_builtins_work(executor):
    result = executor.run_python("print('a')\nexit(0)\nprint('b')\n")
    assert result.ok and result.stdout == "a\n"


@pytest.mark.parametrize("name", ["../escape.py", "/etc/passwd", "main.py", "a/../b.py", "", "./x.py"])
def test_bad_file_names_are_rejected_before_anything_runs(executors, name):
    executor = usable(executors, "runsc")[0]  # checked before any backend is involved
    with pytest.raises(ValueError):
        executor.run_python("print(1)", files={name: "x"})


def test_timeout_must_be_positive(executors):
    executor = usable(executors, "runsc")[0]
    with pytest.raises(ValueError):
        executor.run_python("print(1)", timeout_s=0)


def test_bounded_run_kills_on_cancel_and_says_so():
    """run_bounded (under every backend's host process) looks at the cancel event while it waits:
    the backend's kill runs once, soon after the event is set, and the outcome says `cancelled`."""
    cancel, kills = threading.Event(), []
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    outcome = bounded_process.run_bounded(
        [shutil.which("sleep") or "/bin/sleep", "60"], timeout_s=60, output_limit=1024,
        kill=lambda proc: kills.append(proc.pid), env={}, cancel=cancel)
    assert outcome.kill_reason == KillReason.CANCELLED and len(kills) == 1
    assert outcome.returncode == -9  # the backstop SIGKILLed the host process (this kill only recorded)
    assert time.monotonic() - started < 0.3 + 0.5


def test_bounded_run_that_ends_first_is_not_killed():
    cancel, kills = threading.Event(), []
    outcome = bounded_process.run_bounded([shutil.which("true") or "/bin/true"], timeout_s=10, output_limit=1024,
                                          kill=lambda proc: kills.append(proc.pid), env={}, cancel=cancel)
    cancel.set()
    assert outcome.kill_reason is None and outcome.returncode == 0 and kills == []


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
    no_new_privileges, seccomp = host["SecurityOpt"]
    assert no_new_privileges == "no-new-privileges:true"
    assert json.loads(seccomp.removeprefix("seccomp=")) == oci_seccomp_profile()  # the runsc backend's filter
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


def test_auto_picks_docker_when_an_engine_answers(tmp_path, sandbox_settings, caplog):
    """With an engine at DOCKER_HOST that has runsc, auto takes docker, the strongest backend."""
    reason = DockerBackend(sandbox_settings, tmp_path, default_assets_dir()).prerequisites()
    if reason is not None:
        docker_engine.docker_unavailable(reason)
    executor = SecureCodeExecutor(sandbox_settings.model_copy(update={"backend": "auto"}), tmp_path)
    with caplog.at_level(logging.INFO, logger="a4ps.sandbox"):
        assert executor.select_backend() == "docker"
    assert any("sandbox backend: docker --runtime=runsc" in r.getMessage() and "strongest available" in r.getMessage()
               for r in caplog.records)
    result = executor.run_python("print('via auto')")
    assert result.ok and result.backend == "docker" and result.stdout == "via auto\n"


def test_docker_failed_start_leaves_no_container(docker_executor, monkeypatch):
    """A container the engine created but could not start is removed, and the error says why.
    (containerd's shim of such a container outlives even its removal, an engine-side leak that
    .ci/dockerd.sh stop cleans up; the backend only ever sees the container.)"""
    real = DockerBackend.container_kwargs
    run_ids: list[str] = []

    def broken(self, run_id, stage_dir):
        run_ids.append(run_id)
        return real(self, run_id, stage_dir) | {"command": ["/nonexistent/python3"]}

    monkeypatch.setattr(DockerBackend, "container_kwargs", broken)
    since = time.time()
    with pytest.raises(SandboxFailure, match="/nonexistent/python3"):
        docker_executor.run_python("print(1)")
    engine = docker_engine.client()
    assert docker_engine.run_container_ids(engine, run_ids[0], since)  # it was created: the start failed
    assert docker_engine.run_containers_left(engine, run_ids[0]) == []


def test_docker_timeout_kills_and_removes_the_container(docker_executor):
    """The guest ignores nothing here, but SIGTERM would not stop it either (PID 1): the backend
    SIGKILLs at the deadline and removes the container; nothing of it stays on the host."""
    since = time.time()
    result = docker_executor.run_python("import time\nprint('up', flush=True)\ntime.sleep(60)", timeout_s=2)
    assert result.killed and result.kill_reason == KillReason.TIMEOUT and result.exit_code == 137, result.to_dict()
    assert result.stdout == "up\n" and 2000 <= result.wall_ms < 10_000
    engine = docker_engine.client()
    ids = docker_engine.run_container_ids(engine, result.run_id, since)
    assert len(ids) == 1
    assert docker_engine.run_containers_left(engine, result.run_id) == []
    assert [pid for cid in ids for pid in _leftovers(cid)] == []  # no shim, gofer or sandbox process


def test_docker_image_is_made_from_the_host_and_rebuilt_when_stale(tmp_path, sandbox_settings, docker_executor):
    tag = f"a4ps-sandbox-test:{secrets.token_hex(4)}"
    settings = sandbox_settings.model_copy(update={"docker_image": tag})
    engine = docker_engine.client()
    made: list[str] = []

    def prepared() -> str:
        assert DockerBackend(settings, tmp_path, default_assets_dir()).prerequisites() is None
        image = engine.images.get(tag)
        made.append(image.id)
        return image.id

    try:
        spec = guest_image.collect(default_assets_dir(), tmp_path)
        first = prepared()  # missing: built from this host
        assert engine.images.get(first).labels[guest_image.DIGEST_LABEL] == spec.digest
        assert prepared() == first  # current: left alone
        made.append(guest_image.build_image(engine, tag, replace(spec, digest="0123456789abcdef")))
        rebuilt = prepared()  # stale digest: rebuilt
        assert rebuilt not in (first, made[-2]) and engine.images.get(rebuilt).labels[guest_image.DIGEST_LABEL] == spec.digest
        foreign = io.BytesIO()
        with tarfile.open(fileobj=foreign, mode="w") as tar:
            info = tarfile.TarInfo("hello")
            tar.addfile(info, io.BytesIO(b""))
        repository, version = tag.split(":")
        engine.api.import_image_from_data(foreign.getvalue(), repository=repository, tag=version)
        own = engine.images.get(tag).id
        assert prepared() == own  # no label: the user's own image under that name is used as it is
    finally:
        for image_id in {*made, tag}:
            try:
                engine.images.remove(image_id, force=True)
            except Exception as exc:  # noqa: BLE001 - cleanup; only "already gone" is expected
                assert "No such image" in str(exc), exc


def test_guest_image_holds_the_guest_the_other_backends_use(tmp_path):
    """The docker image's rootfs: the same skeleton and the host's own Python, its stdlib, the tools
    and the libraries they load; root-owned; built without any registry (no engine needed here)."""
    spec = guest_image.collect(default_assets_dir(), tmp_path / "cache")
    buffer = io.BytesIO()
    guest_image.write_tar(spec, buffer)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        members = {m.name: m for m in tar.getmembers()}
        passwd = tar.extractfile("etc/passwd").read().decode()
    assert "sandbox:x:1000:1000" in passwd and passwd == (default_assets_dir() / "rootfs/etc/passwd").read_text()
    python = os.path.realpath("/usr/bin/python3").lstrip("/")
    assert members["usr/bin/python3"].issym() and members[python].isfile() and members[python].mode & 0o111
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    for mount_point in ("tmp", "proc", "dev", "sandbox"):
        assert members[mount_point].isdir()
    stdlib = Path(python).name  # python3.11
    assert f"usr/lib/{stdlib}/os.py" in members
    assert any(name.startswith(f"usr/lib/{stdlib}/lib-dynload/_json") for name in members)
    assert not any(f"usr/lib/{stdlib}/config-" in name for name in members)  # build-time files left out
    assert any(name.endswith("/libc.so.6") for name in members)
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert members["usr/bin/mount"].mode & 0o4000  # kept setuid: the hostile suite checks it cannot elevate
    assert {"usr/bin/sleep", "usr/bin/dash"} <= set(members)
    changes = guest_image.image_changes(spec.digest)
    assert "USER 1000:1000" in changes and f"LABEL {guest_image.DIGEST_LABEL}={spec.digest}" in changes


def test_guest_image_digest_follows_the_skeleton(tmp_path):
    """An edited rootfs skeleton must change the digest, or the engine keeps serving a stale image."""
    assets = tmp_path / "assets"
    shutil.copytree(default_assets_dir() / "rootfs", assets / "rootfs")
    before = guest_image.collect(assets, tmp_path / "cache").digest
    assert guest_image.collect(assets, tmp_path / "cache").digest == before  # stable when nothing changed
    with open(assets / "rootfs" / "etc" / "hosts", "a") as hosts:
        hosts.write("# edited\n")
    assert guest_image.collect(assets, tmp_path / "cache").digest != before


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


@pytest.mark.parametrize("backend", BACKEND_ORDER)
def test_concurrent_runs_from_many_threads_all_complete(executors, backend):
    executor, work_dir = usable(executors, backend)
    results = []
    lock = threading.Lock()

    def one(i: int) -> None:
        result = executor.run_python(f"print({i} * 2)")
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


def test_docker_run_orphaned_by_a_killed_host_is_reaped_on_next_start(tmp_path, sandbox_settings, docker_executor):
    """SIGKILL of the host mid-run leaves the container running; the next executor removes it."""
    engine = docker_engine.client()
    host = subprocess.Popen([sys.executable, "-c", _DYING_HOST, "docker", str(tmp_path)],
                            cwd=project_root(), stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        run_id = None
        while time.monotonic() < deadline and run_id is None:
            for run_dir in (tmp_path / "runs").iterdir():
                if [c for c in engine.containers.list(filters={"label": f"{docker_engine.RUN_LABEL}={run_dir.name}"})]:
                    run_id = run_dir.name
            time.sleep(0.05)
        assert run_id is not None, "the guest run never started"
        time.sleep(0.5)
    finally:
        host.kill()
        host.wait()
    assert docker_engine.run_containers_left(engine, run_id)  # the dead host left its container running
    executor = SecureCodeExecutor(sandbox_settings.model_copy(update={"backend": "docker"}), tmp_path)
    executor.select_backend()
    assert docker_engine.run_containers_left(engine, run_id) == []
    assert not (tmp_path / "runs" / run_id).exists()
