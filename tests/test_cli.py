"""The command-line clients against real backends: they never wait forever on a backend that is gone."""

from __future__ import annotations

import json
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


ANSWER = "Take a raincoat."


def scripted_answers(model, messages, fmt):
    """The Ollama stand-in's answers (fast, deterministic, whatever the graph asks): prose is
    ANSWER; a JSON answer fills each required field with the first allowed or simplest value."""
    if not isinstance(fmt, dict):
        return ANSWER
    return json.dumps(_value_for(fmt))


def _value_for(schema: dict):
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _value_for(props[name]) for name in schema.get("required", props)}
    return {"string": ANSWER, "boolean": False, "number": 0.1, "integer": 1, "array": []}.get(kind)


ADD = {"name": "add_numbers", "docstring": "Add two integers.", "signature": "add_numbers(a: int, b: int) -> int",
       "spec": "Return a + b.", "source": "def add_numbers(a: int, b: int) -> int:\n    return a + b\n",
       "tests": "def test_add():\n    assert add_numbers(2, 3) == 5\n", "test_names": ["test_add"],
       "model": "phi3:mini"}


def test_chat_the_tool_commands_and_shutdown_on_a_scripted_backend(tmp_path):
    """`a4ps chat` end to end, list_tools/get_tool on a tool from an earlier run, and the shutdown
    command, on a backend whose model is the Ollama stand-in (so the dialogue is known)."""
    from a4ps.forge import ToolRegistry
    from a4ps.forge.registry import Tool
    from tests.support.ollama_standin import OllamaStandIn

    data = tmp_path / "data"
    ToolRegistry(data / "tools").save(Tool(**ADD))
    config = write_config(tmp_path / "config", settings={"graph.max_turns": 1})
    with OllamaStandIn(models=["llama3.2:3b", "phi3:mini", "gemma2:2b"], responder=scripted_answers) as server:
        backend = BackendProcess(data, config, extra_env={"OLLAMA_HOST": server.host}).start()
        try:
            chat = a4ps("chat", env=backend.env, input="It is raining. What should I wear?\n\n", timeout=300)
            assert chat.returncode == 0, chat.stderr
            assert chat.stdout.startswith("BAT OS headless client.") and chat.stdout.count("task> ") == 2
            assert "[BRICK · brick · turn 1]" in chat.stdout and "[ROBIN · robin · turn 1]" in chat.stdout
            assert "=== Synthesis (ALFRED, 1 turn(s)) ===\nTake a raincoat." in chat.stdout

            listed = backend.request("list_tools")["tools"]
            assert [t["name"] for t in listed] == ["add_numbers"] and "source" not in listed[0]
            tool = backend.request("get_tool", name="add_numbers")["tool"]
            assert tool["source"] == ADD["source"] and tool["tests"] == ADD["tests"]
            assert backend.request("get_tool", name="nothing")["code"] == "not_found"

            assert backend.request("shutdown") == {"ok": True, "stopping": True}
            assert backend.proc.wait(60) == 0
        finally:
            if backend.proc.poll() is None:
                backend.stop()
    assert "stopping: shutdown command" in backend.output()
    assert "living image saved; backend stopped" in backend.output()
    state, _ = LivingImage(data / "image", data / "image.key", 5).load_latest()
    assert [t["status"] for t in state["tasks"]] == ["done"]
