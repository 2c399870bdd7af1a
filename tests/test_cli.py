"""The command-line clients against real backends: they never wait forever on a backend that is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from a4ps.config.loader import project_root
from a4ps.protos import LivingImage
from tests.support.backend import BackendProcess, wait_for_task
from tests.support.config import free_port, write_config


def a4ps(*args: str, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "a4ps", *args], cwd=project_root(), env=env, capture_output=True,
                          text=True, **kwargs)


def nowhere_env(tmp_path) -> dict:
    return {**os.environ, "A4PS_DATA_DIR": str(tmp_path / "data"), "A4PS_REP_ADDR": f"tcp://127.0.0.1:{free_port()}",
            "A4PS_PUB_ADDR": f"tcp://127.0.0.1:{free_port()}"}


def test_ask_gives_up_with_a_clear_error_when_the_backend_dies(tmp_path):
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 3})
    backend = BackendProcess(tmp_path / "data", config).start()
    events = backend.subscribe()
    ask = subprocess.Popen([sys.executable, "-m", "a4ps", "ask", "Write a long essay about rivers."],
                           cwd=project_root(), env=backend.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        queued = events.wait_for("task", 60)
        assert queued is not None
        wait_for_task(events, queued["task_id"], {"running"}, 60)
        backend.kill()
        killed_at = time.monotonic()
        out, err = ask.communicate(timeout=90)
    finally:
        if ask.poll() is None:
            ask.kill()
        events.close()
    assert ask.returncode == 3, (out, err)
    assert "a4ps: the backend stopped answering" in err and "Traceback" not in err
    assert time.monotonic() - killed_at < 60, "gave up within the silence ping plus the request timeout"


def test_wait_ready_stops_with_a_clear_message_when_no_backend_answers(tmp_path):
    env = nowhere_env(tmp_path)
    sleeper = subprocess.Popen(["sleep", "60"])  # a backend process that never answers
    try:
        started = time.monotonic()
        result = a4ps("wait-ready", "--timeout", "1.5", "--pid", str(sleeper.pid), env=env, timeout=60)
        assert result.returncode == 1 and time.monotonic() - started < 30
        assert f"no backend answered at {env['A4PS_REP_ADDR']} within 1.5 s" in result.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    gone = a4ps("wait-ready", "--timeout", "60", "--pid", str(sleeper.pid), env=env, timeout=60)
    assert gone.returncode == 1 and "the backend exited during start-up" in gone.stderr


def test_run_sh_stops_with_a_clear_message_when_the_backend_never_answers(tmp_path):
    """A backend stuck before it serves (its newest checkpoint is a FIFO: reading it blocks): run.sh
    says so and stops, instead of opening the client onto nothing, and takes the backend down."""
    data = tmp_path / "data"
    image = LivingImage(data / "image", data / "image.key", 5)
    image.save({"format": 2})
    os.mkfifo(data / "image" / "image-00000000000000000099.dill")
    env = {**nowhere_env(tmp_path), "A4PS_CONFIG_DIR": str(write_config(tmp_path / "config")),
           "OLLAMA_HOST": f"http://127.0.0.1:{free_port()}", "A4PS_START_TIMEOUT_S": "3"}
    result = subprocess.run(["./run.sh", "--headless"], cwd=project_root(), env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"no backend answered at {env['A4PS_REP_ADDR']} within 3 s" in result.stderr
    assert "headless client" not in result.stdout and "task>" not in result.stdout
    assert backends_using(data) == [], "run.sh left its backend running"


def backends_using(data_dir) -> list[int]:
    """Pids of `a4ps serve` processes whose data dir is `data_dir`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"serve" in cmdline and f"A4PS_DATA_DIR={data_dir}".encode() in environ:
            found.append(int(pid))
    return found
