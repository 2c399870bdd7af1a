"""ToolForge: scripted answers through the Ollama stand-in, the real sandbox, the real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from a4ps.backend.compose import build_forge, build_runner
from a4ps.config import load_codex, load_settings
from a4ps.events import EventBus
from a4ps.forge.checks import ToolCheckError, check_tool
from a4ps.forge.registry import BROKEN, OK
from a4ps.models import ModelManager
from a4ps.models.embedded import EmbeddedProvider
from a4ps.models.ollama_provider import OllamaProvider
from a4ps.protos import ProtoManager
from a4ps.config.loader import project_root
from tests.support.config import plumbing_model
from tests.support.ollama_standin import OllamaStandIn

GOOD = {
    "name": "word_count",
    "docstring": "Count the words in a text.",
    "code": 'def word_count(text: str) -> int:\n    """Count the words in a text."""\n    import re\n\n'
            '    return len(re.findall(r"\\S+", text))\n',
    "tests": "def test_simple():\n    assert word_count('a b c') == 3\n\ndef test_empty():\n    assert word_count('') == 0\n",
}
SIDE_EFFECT = {**GOOD, "code": GOOD["code"] + "\nprint('loaded')\n"}
WRONG = {**GOOD, "code": GOOD["code"].replace('len(re.findall(r"\\S+", text))', "len(text)")}


def settings_for(tmp_path, host=None):
    settings = plumbing_model(load_settings())
    settings.data_dir = str(tmp_path / "data")
    settings.forge.max_retries = 3
    if host:
        settings.models.ollama.host = host
    return settings


def scripted_forge(tmp_path, answers, bus=None):
    queue = [json.dumps(a) for a in answers]
    server = OllamaStandIn(models=["phi3:mini"], responder=lambda m, msgs, fmt: queue.pop(0))
    server.__enter__()
    settings = settings_for(tmp_path, server.host)
    codex = load_codex()
    models = ModelManager(OllamaProvider(settings.models.ollama))
    forge = build_forge(settings, codex, models, ProtoManager.from_codex(codex, "ollama"), bus or EventBus())
    return forge, server


def test_static_checks():
    check_tool("word_count", GOOD["code"], GOOD["tests"])
    with pytest.raises(ToolCheckError, match="top-level Expr"):
        check_tool("word_count", SIDE_EFFECT["code"], GOOD["tests"])
    with pytest.raises(ToolCheckError, match="imports 'os'"):
        check_tool("word_count", "import os\n" + GOOD["code"], GOOD["tests"])
    with pytest.raises(ToolCheckError, match="imports 'subprocess'"):
        check_tool("word_count", GOOD["code"].replace("import re", "import subprocess, re"), GOOD["tests"])
    with pytest.raises(ToolCheckError, match="decorators"):
        check_tool("f", "import functools\n@functools.cache\ndef f(x):\n    'doc'\n    return x\n", "def test_a():\n    f(1)\n")
    with pytest.raises(ToolCheckError, match="default values"):
        check_tool("f", "def f(x=print('hi')):\n    'doc'\n    return x\n", "def test_a():\n    f(1)\n")
    with pytest.raises(ToolCheckError, match="never call"):
        check_tool("word_count", GOOD["code"], "def test_a():\n    assert True\n")
    with pytest.raises(ToolCheckError, match="syntax error"):
        check_tool("word_count", "def word_count(:\n", GOOD["tests"])


def test_forge_success_registers_announces_and_calls(tmp_path):
    bus = EventBus()
    created = []
    bus.subscribe("tool_created", lambda e: created.append(e.payload["tool"]))
    forge, server = scripted_forge(tmp_path, [GOOD], bus)
    try:
        outcome = forge.forge("count the words in a text")
    finally:
        server.__exit__()
    assert outcome.ok and outcome.tool.name == "word_count" and len(outcome.attempts) == 1
    folder = forge.registry.path_of("word_count")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["spec"] == "count the words in a text" and manifest["model"] == "phi3:mini"
    assert manifest["validation"]["passed"] == ["test_simple", "test_empty"]
    assert manifest["validation"]["backend"] in ("runsc", "bwrap", "docker") and manifest["source_hash"]
    assert (folder / "tool.py").read_text() == GOOD["code"]
    assert created and created[0]["signature"] == "word_count(text: str) -> int" and created[0]["source"] == GOOD["code"]
    call = forge.call("word_count", {"text": "one two three four"})
    assert call.ok and call.value == 4 and call.execution["backend"] == manifest["validation"]["backend"]
    assert "a4ps_tool" not in sys.modules and "tool_source" not in sys.modules
    assert not forge.call("word_count", {"nope": 1}).ok
    assert "no usable tool" in forge.call("missing_tool", {}).error


def test_failures_are_fed_back_until_it_passes(tmp_path):
    forge, server = scripted_forge(tmp_path, [SIDE_EFFECT, WRONG, GOOD])
    try:
        outcome = forge.forge("count words")
        prompts = [b["messages"][-1]["content"] for p, b in server.requests if p == "/api/chat"]
    finally:
        server.__exit__()
    assert outcome.ok and len(outcome.attempts) == 3
    assert "top-level Expr" in outcome.attempts[0]["error"]
    assert "test_simple" in outcome.attempts[1]["error"] and "AssertionError" in outcome.attempts[1]["error"]
    assert "rejected: the code has a top-level Expr" in prompts[1]
    assert "failed its tests in the sandbox" in prompts[2]


def test_gives_up_after_max_retries(tmp_path):
    forge, server = scripted_forge(tmp_path, [WRONG, WRONG, WRONG])
    try:
        outcome = forge.forge("count words")
    finally:
        server.__exit__()
    assert not outcome.ok and len(outcome.attempts) == 3 and forge.registry.all() == []
    assert "no tool for 'count words' after 3 attempt(s)" in outcome.summary


def test_tool_code_runs_only_in_the_sandbox(tmp_path):
    marker = tmp_path / "host-marker"
    sneaky = {"name": "sneaky", "docstring": "Writes a file.",
              "code": "def sneaky(path: str) -> str:\n    'Writes a file.'\n"
                      "    with open(path, 'w') as f:\n        f.write('x')\n    return path\n",
              "tests": "def test_tmp():\n    assert sneaky('/tmp/ok.txt') == '/tmp/ok.txt'\n"}
    forge, server = scripted_forge(tmp_path, [sneaky])
    try:
        assert forge.forge("write a file").ok
    finally:
        server.__exit__()
    result = forge.call("sneaky", {"path": str(marker)})
    assert not result.ok and ("No such file" in result.error or "Read-only" in result.error or "denied" in result.error)
    assert not marker.exists()


def test_registry_reloads_and_revalidates(tmp_path):
    forge, server = scripted_forge(tmp_path, [GOOD])
    try:
        assert forge.forge("count words").ok
    finally:
        server.__exit__()
    runner = build_runner(settings_for(tmp_path))
    assert [t.name for t in runner.registry.load()] == ["word_count"]
    assert runner.revalidate_all() == {"word_count": OK}
    # a tool whose tests now fail is marked broken and not offered
    tool = runner.registry.get("word_count")
    tool.tests = "def test_changed():\n    assert word_count('a b') == 3\n"
    runner.registry.save(tool)
    assert runner.revalidate_all() == {"word_count": BROKEN}
    assert runner.usable_tools() == []
    # editing the source on disk behind the registry's back breaks the hash
    (runner.registry.path_of("word_count") / "tool.py").write_text(GOOD["code"] + "\n")
    fresh = build_runner(settings_for(tmp_path))
    assert fresh.registry.load()[0].status == BROKEN


def test_one_forge_round_on_the_real_embedded_model(tmp_path):
    settings = settings_for(tmp_path)
    settings.forge.max_retries = 1
    codex = load_codex()
    models = ModelManager(EmbeddedProvider(settings.models.embedded))
    forge = build_forge(settings, codex, models, ProtoManager.from_codex(codex, "embedded"), EventBus())
    outcome = forge.forge("return the sum of a list of numbers")
    models.unload()
    assert len(outcome.attempts) == 1
    attempt = outcome.attempts[0]
    assert outcome.ok or attempt["error"]
    if "validation" in attempt:  # it reached the sandbox: the record says what ran
        assert attempt["validation"]["backend"] in ("runsc", "bwrap", "docker")


def run_cli(settings_env, *args):
    return subprocess.run([sys.executable, "-m", "a4ps", *args], cwd=project_root(), env=settings_env,
                          capture_output=True, text=True, timeout=120)


def test_cli_sandbox_run_tools_and_tool(tmp_path):
    env = {**os.environ, "A4PS_DATA_DIR": str(tmp_path / "data")}
    script = tmp_path / "hello.py"
    script.write_text("import os\nprint('hi', os.getuid())\n")
    result = run_cli(env, "sandbox", "run", str(script))
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["stdout"] == "hi 1000\n" and data["exit_code"] == 0
    assert data["backend"] in ("runsc", "bwrap", "docker") and data["killed"] is False and data["wall_ms"] > 0
    script.write_text("while True:\n    pass\n")
    data = json.loads(run_cli(env, "sandbox", "run", str(script), "--timeout", "1").stdout)
    assert data["killed"] is True and data["killed_reason"] == "timeout"
    assert "no tools yet" in run_cli(env, "tools").stdout
    forge, server = scripted_forge(tmp_path, [GOOD])
    try:
        assert forge.forge("count words").ok
    finally:
        server.__exit__()
    assert "ok       word_count(text: str) -> int" in run_cli(env, "tools").stdout
    called = run_cli(env, "tool", "word_count", '{"text": "a b"}')
    assert called.returncode == 0 and json.loads(called.stdout)["value"] == 2
    assert run_cli(env, "tool", "word_count", "{not json").returncode == 2
