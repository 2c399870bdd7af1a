"""ToolForge: scripted answers through the Ollama stand-in, the real sandbox, the real registry;
one round on the small embedded model (plumbing) and one on the capable model (quality)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from a4ps.backend.compose import build_forge, build_registry, build_runner
from a4ps.config import load_codex, load_settings
from a4ps.config.loader import project_root
from a4ps.events import EventBus
from a4ps.forge import ToolForge, ToolRunner
from a4ps.forge import registry as registry_module
from a4ps.forge.checks import ToolCheckError, check_tool, insert_docstring, prepare_tool
from a4ps.forge.harness import run_cases
from a4ps.forge.registry import BROKEN, OK, VALIDATING, Tool
from a4ps.forge.schemas import CHECKS_WRONG, FUNCTION_WRONG, TOOL_NAME_PATTERN
from a4ps.models import ModelManager
from a4ps.models.embedded import EmbeddedProvider
from a4ps.models.ollama_provider import OllamaProvider
from a4ps.protos import ProtoManager
from a4ps.sandbox import SandboxFailure
from tests.support.config import plumbing_model
from tests.support.ollama_standin import OllamaStandIn

GOOD = {
    "name": "word_count",
    "docstring": "Count the words in a text.",
    "code": 'def word_count(text: str) -> int:\n    """Count the words in a text."""\n    import re\n\n'
            '    return len(re.findall(r"\\S+", text))\n',
    "tests": ["word_count('a b c') == 3", "assert word_count('') == 0"],
}
GOOD_TESTS = "def test_1():\n    assert word_count('a b c') == 3\n\n\ndef test_2():\n    assert word_count('') == 0\n"
SIDE_EFFECT = {**GOOD, "code": GOOD["code"] + "\nprint('loaded')\n"}
IMPORTS_OS = {**GOOD, "code": GOOD["code"].replace("import re", "import re, os")}
WRONG = {**GOOD, "code": GOOD["code"].replace('len(re.findall(r"\\S+", text))', "len(text)")}
SPLITTING = {**GOOD, "code": "def word_count(text):\n    return len(text.split())\n"}  # no docstring in the code


def revised(answer: dict, diagnosis: str = "The test expects the count of words.", verdict: str = FUNCTION_WRONG) -> dict:
    """A retry answer: the revision schema asks for a diagnosis and a verdict first."""
    return {"diagnosis": diagnosis, "verdict": verdict, **answer}


GCD_CASES = [([12, 18], 6), ([17, 5], 1), ([100, 75], 25), ([7, 7], 7), ([1, 99], 1), ([270, 192], 6)]
QWEN = Path(__file__).resolve().parents[1] / "data" / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"  # assembled by set-up


def settings_for(tmp_path, host=None, retries=3):
    settings = plumbing_model(load_settings())
    settings.data_dir = str(tmp_path / "data")
    settings.forge.max_retries = retries
    if host:
        settings.models.ollama.host = host
    return settings


def scripted_forge(tmp_path, answers, bus=None, retries=3):
    """A forge whose model is the Ollama stand-in answering from `answers` (a dict, or a callable of
    the request's messages returning one)."""
    queue = list(answers)

    def respond(model, messages, fmt):
        answer = queue.pop(0)
        return json.dumps(answer(messages) if callable(answer) else answer)

    server = OllamaStandIn(models=["phi3:mini"], responder=respond)
    server.__enter__()
    settings = settings_for(tmp_path, server.host, retries)
    codex = load_codex()
    models = ModelManager(OllamaProvider(settings.models.ollama))
    forge = build_forge(settings, codex, models, ProtoManager.from_codex(codex, "ollama"), bus or EventBus())
    return forge, server


def chat_requests(server):
    return [body["messages"] for path, body in server.requests if path == "/api/chat"]


# --- static checks and repairs --------------------------------------------------------------------

def test_static_checks():
    check_tool("word_count", GOOD["code"], GOOD_TESTS)
    with pytest.raises(ToolCheckError, match="top-level Expr"):
        check_tool("word_count", SIDE_EFFECT["code"], GOOD_TESTS)
    with pytest.raises(ToolCheckError, match="imports 'os'") as info:
        check_tool("word_count", "import os\n" + GOOD["code"], GOOD_TESTS)
    assert "the only modules allowed are" in info.value.feedback and "math" in info.value.feedback
    with pytest.raises(ToolCheckError, match="imports 'subprocess'"):
        check_tool("word_count", GOOD["code"].replace("import re", "import subprocess, re"), GOOD_TESTS)
    with pytest.raises(ToolCheckError, match="decorators"):
        check_tool("f", "import functools\n@functools.cache\ndef f(x):\n    'doc'\n    return x\n", "def test_a():\n    f(1)\n")
    with pytest.raises(ToolCheckError, match="default values"):
        check_tool("f", "def f(x=print('hi')):\n    'doc'\n    return x\n", "def test_a():\n    f(1)\n")
    with pytest.raises(ToolCheckError, match="never call") as info:
        check_tool("word_count", GOOD["code"], "def test_a():\n    assert True\n")
    assert "e.g. word_count(...) == <expected value>" in info.value.feedback
    with pytest.raises(ToolCheckError, match=r"syntax error at line 1: `def word_count\(:`"):
        check_tool("word_count", "def word_count(:\n", GOOD_TESTS)
    with pytest.raises(ToolCheckError, match="needs a docstring"):  # the rule stays; prepare_tool supplies one
        check_tool("word_count", SPLITTING["code"], GOOD_TESTS)


def test_prepare_tool_makes_only_mechanical_repairs():
    prepared = prepare_tool("word_count", "Count the words.", SPLITTING["code"], GOOD["tests"])
    assert prepared.tests == GOOD_TESTS  # one test per assert expression; a leading `assert` is dropped
    assert prepared.code == 'def word_count(text):\n    """Count the words."""\n    return len(text.split())\n'
    assert prepared.repairs == ("inserted the docstring into the function",)
    assert check_tool(prepared.name, prepared.code, prepared.tests).docstring == "Count the words."
    # a body on the def line, and a docstring with quotes, still give valid code with that docstring
    one_line = insert_docstring("def f(x): return x\n", 'Say "hi" \\ back.')
    assert compile(one_line, "t", "exec") and 'Say "hi" \\\\ back.' in one_line
    # an existing docstring is kept; stray example calls and a __main__ guard are dropped
    code = GOOD["code"] + "\nprint(word_count('a b'))\n"
    tests = GOOD_TESTS + "\ntest_1()\nif __name__ == '__main__':\n    test_2()\n"
    prepared = prepare_tool("word_count", "Other text.", code, tests)
    assert prepared.code == GOOD["code"] + "\n" and prepared.tests.rstrip() == GOOD_TESTS.rstrip()
    assert len(prepared.repairs) == 2 and "Other text" not in prepared.code
    # the tool takes its function's name when the tests call that function
    assert prepare_tool("counter", "", GOOD["code"], GOOD["tests"]).name == "word_count"
    assert prepare_tool("counter", "", GOOD["code"], "def test_a():\n    assert counter('a') == 1\n").name == "counter"
    # a check that is not an expression (a copied line of feedback) is dropped while valid ones remain
    copied = prepare_tool("word_count", "d", GOOD["code"], [*GOOD["tests"], "passed: test_1"])
    assert copied.tests == GOOD_TESTS and "`passed: test_1`" in copied.repairs[-1]
    assert "def test_1" in prepare_tool("word_count", "d", GOOD["code"], ["passed: x"]).tests  # none valid: kept, refused later
    # what is not mechanical is left for the checks to refuse
    assert prepare_tool("word_count", "d", IMPORTS_OS["code"], GOOD["tests"]).code == IMPORTS_OS["code"]


# --- forging with scripted answers ------------------------------------------------------------------

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
    assert manifest["version"] == 1 and forge.registry.files_of("word_count") == folder / "v1"
    assert manifest["validation"]["passed"] == ["test_1", "test_2"]
    assert (folder / "v1" / "test_tool.py").read_text() == GOOD_TESTS
    assert manifest["validation"]["backend"] in ("runsc", "bwrap", "docker") and manifest["source_hash"]
    assert (folder / "v1" / "tool.py").read_text() == GOOD["code"]
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left
    assert created and created[0]["signature"] == "word_count(text: str) -> int" and created[0]["source"] == GOOD["code"]
    call = forge.call("word_count", {"text": "one two three four"})
    assert call.ok and call.value == 4 and call.execution["backend"] == manifest["validation"]["backend"]
    assert "a4ps_tool" not in sys.modules and "tool_source" not in sys.modules
    bad = forge.call("word_count", {"nope": 1})
    assert not bad.ok and "unexpected keyword argument 'nope'" in bad.error
    assert "no usable tool" in forge.call("missing_tool", {}).error


def test_docstring_field_goes_into_the_registered_source(tmp_path):
    forge, server = scripted_forge(tmp_path, [SPLITTING])
    try:
        outcome = forge.forge("count words")
    finally:
        server.__exit__()
    assert outcome.ok and len(outcome.attempts) == 1
    assert outcome.attempts[0]["repairs"] == ["inserted the docstring into the function"]
    source = (forge.registry.files_of("word_count") / "tool.py").read_text()
    assert source.startswith('def word_count(text):\n    """Count the words in a text."""\n')
    assert outcome.tool.docstring == "Count the words in a text."


def test_failures_are_fed_back_precisely_with_the_previous_answer(tmp_path):
    forge, server = scripted_forge(tmp_path, [IMPORTS_OS, revised(GOOD, "Use re only.")])
    try:
        outcome = forge.forge("count words")
        requests = chat_requests(server)
    finally:
        server.__exit__()
    assert outcome.ok and len(outcome.attempts) == 2
    assert "imports 'os'" in outcome.attempts[0]["error"] and "diagnosis" not in outcome.attempts[0]
    assert outcome.attempts[1]["diagnosis"] == "Use re only."
    assert len(requests[0]) == 2  # system + the forge prompt, nothing else
    # the retry shows the model its own previous answer, then exactly what to change
    assert [m["role"] for m in requests[1]] == ["system", "user", "assistant", "user"]
    assert json.loads(requests[1][2]["content"])["code"] == IMPORTS_OS["code"]
    assert "the code imports 'os', which is not allowed" in requests[1][3]["content"]
    assert "the only modules allowed are" in requests[1][3]["content"]
    assert requests[1][1] == requests[0][1]  # the first prompt is unchanged (its cache is reused)
    # a retry's schema asks for a diagnosis before the corrected tool
    formats = [body["format"] for path, body in server.requests if path == "/api/chat"]
    assert "diagnosis" not in formats[0]["properties"]
    assert list(formats[1]["properties"])[0] == "diagnosis" and "diagnosis" in formats[1]["required"]

    # a failed test: the comparison is shown, and the model asked to settle it by hand
    forge, server = scripted_forge(tmp_path / "b", [WRONG, revised(GOOD, "Split on whitespace.")])
    try:
        outcome = forge.forge("count words")
        requests = chat_requests(server)
    finally:
        server.__exit__()
    assert outcome.ok and outcome.attempts[0]["error"].startswith(
        "test_1 failed at `assert word_count('a b c') == 3`: word_count('a b c') returned 5, "
        "but the test expects it to equal 3")
    assert json.loads(requests[1][2]["content"])["code"] == WRONG["code"]
    assert "word_count('a b c') returned 5, but the test expects it to equal 3" in requests[1][3]["content"]
    assert ("work out word_count('a b c') by hand for the need, step by step, and say which is right: 5 (what the "
            "function returned) or 3 (what the test expects)") in requests[1][3]["content"]
    assert "(1 other check(s) passed.)" in requests[1][3]["content"]


def test_after_a_failed_revision_the_next_attempt_starts_afresh_and_hotter(tmp_path):
    """Asked again on the same conversation a small model repeats its revision; the third attempt is a
    new answer to the plain forge prompt, sampled at a higher temperature."""
    forge, server = scripted_forge(tmp_path, [WRONG, revised(WRONG), GOOD])
    try:
        outcome = forge.forge("count words")
        requests = chat_requests(server)
        bodies = [body for path, body in server.requests if path == "/api/chat"]
    finally:
        server.__exit__()
    assert outcome.ok and len(outcome.attempts) == 3 and "diagnosis" not in outcome.attempts[2]
    assert requests[2] == requests[0] and "diagnosis" not in bodies[2]["format"]["properties"]
    temperatures = [b["options"]["temperature"] for b in bodies]
    assert temperatures[0] == temperatures[1] < temperatures[2]


def test_a_check_the_model_judges_wrong_and_keeps_is_dropped(tmp_path):
    wrong_check = {**GOOD, "tests": ["word_count('a b c') == 3", "word_count('x y') == 3", "word_count('') == 0"]}
    forge, server = scripted_forge(tmp_path, [
        wrong_check,
        revised(wrong_check, "Counting by hand, 'x y' has 2 words.", FUNCTION_WRONG),  # contradicts itself: kept
        wrong_check,  # afresh
        revised(wrong_check, "Counting by hand, 'x y' has 2 words.", CHECKS_WRONG),  # the check goes
    ], retries=4)
    try:
        outcome = forge.forge("count words")
        requests = chat_requests(server)
    finally:
        server.__exit__()
    assert outcome.ok and len(outcome.attempts) == 4
    assert "word_count('x y') returned 2, but the test expects it to equal 3" in outcome.attempts[1]["error"]
    assert "In verdict, say which was wrong" in requests[1][-1]["content"]
    assert "repairs" not in outcome.attempts[1] or not any(r.startswith("dropped") for r in outcome.attempts[1]["repairs"])
    assert outcome.attempts[3]["verdict"] == CHECKS_WRONG
    assert outcome.attempts[3]["repairs"][0] == ("dropped the check `word_count('x y') == 3` the model judged wrong "
                                                 "(the function returns 2)")
    assert "x y" not in outcome.tool.tests and outcome.tool.test_names == ["test_1", "test_2"]


def test_a_disowned_check_goes_even_when_its_expected_value_was_changed(tmp_path):
    """The model says its expected value was wrong but writes another wrong one: with the function
    unchanged, the check on that call is dropped (it would fail again); at least one check remains."""
    wrong_check = {**GOOD, "tests": ["word_count('a b c') == 3", "word_count('x y') == 3"]}
    still_wrong = {**GOOD, "tests": ["word_count('a b c') == 3", "word_count('x y') == 4"]}
    forge, server = scripted_forge(tmp_path, [wrong_check, revised(still_wrong, "It has 4.", CHECKS_WRONG)])
    try:
        outcome = forge.forge("count words")
    finally:
        server.__exit__()
    assert outcome.ok and len(outcome.attempts) == 2
    assert outcome.attempts[1]["repairs"][0].startswith("dropped the check `word_count('x y') == 4`")
    assert outcome.tool.test_names == ["test_1"]
    # a single check is never dropped: the tool must keep a passing test
    only = {**GOOD, "tests": ["word_count('x y') == 3", "word_count('x y') == 3"]}
    forge, server = scripted_forge(tmp_path / "b", [only, revised(only, "x", CHECKS_WRONG), only])
    try:
        outcome = forge.forge("count words")
    finally:
        server.__exit__()
    assert not outcome.ok and all("returned 2" in a["error"] for a in outcome.attempts)


def test_a_disowned_check_stays_when_the_function_changed(tmp_path):
    wrong_check = {**GOOD, "tests": ["word_count('a b c') == 3", "word_count('x y') == 3"]}
    changed = {**wrong_check, "code": SPLITTING["code"]}
    forge, server = scripted_forge(tmp_path, [wrong_check, revised(changed, "x", CHECKS_WRONG), changed,
                                              revised(changed, "x", CHECKS_WRONG)], retries=4)
    try:
        outcome = forge.forge("count words")
    finally:
        server.__exit__()
    # new code is tested against every check it came with; the check goes only once it failed *this* code
    assert outcome.ok and len(outcome.attempts) == 4
    assert not any(r.startswith("dropped") for r in outcome.attempts[1]["repairs"])
    assert "word_count('x y') returned 2" in outcome.attempts[1]["error"]
    assert outcome.attempts[3]["repairs"][0].startswith("dropped the check `word_count('x y') == 3`")


def test_exceptions_name_the_tool_line(tmp_path):
    raising = {**GOOD, "code": "def word_count(text):\n    words = text.split()\n    return len(words) // 0\n"}
    forge, server = scripted_forge(tmp_path, [raising, revised(raising), raising])
    try:
        outcome = forge.forge("count words")
    finally:
        server.__exit__()
    assert not outcome.ok
    error = outcome.attempts[0]["error"]
    assert "test_1 failed at `assert word_count('a b c') == 3`: ZeroDivisionError" in error
    assert "(raised in the function at `return len(words) // 0`)" in error


def test_gives_up_after_max_retries(tmp_path):
    forge, server = scripted_forge(tmp_path, [WRONG, revised(WRONG), WRONG])
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
              "tests": ["sneaky('/tmp/ok.txt') == '/tmp/ok.txt'", "sneaky('/tmp/b') == '/tmp/b'"]}
    forge, server = scripted_forge(tmp_path, [sneaky])
    try:
        assert forge.forge("write a file").ok
    finally:
        server.__exit__()
    result = forge.call("sneaky", {"path": str(marker)})
    assert not result.ok and ("No such file" in result.error or "Read-only" in result.error or "denied" in result.error)
    assert not marker.exists()


# --- the registry: reload, re-validation, versions, atomic manifests ----------------------------------

def test_registry_reloads_and_revalidates(tmp_path):
    forge, server = scripted_forge(tmp_path, [GOOD])
    try:
        assert forge.forge("count words").ok
    finally:
        server.__exit__()
    runner = build_runner(settings_for(tmp_path))
    assert [t.name for t in runner.registry.load()] == ["word_count"]
    assert runner.revalidate_all() == {"word_count": OK}
    # a tool whose tests now fail is marked broken (with the failure) and not offered
    tool = runner.registry.get("word_count")
    tool.tests = "def test_changed():\n    assert word_count('a b') == 3\n"
    runner.registry.save(tool)
    assert runner.revalidate_all() == {"word_count": BROKEN}
    assert runner.usable_tools() == []
    assert "word_count('a b') returned 2" in runner.registry.get("word_count").validation["error"]
    # editing the source on disk behind the registry's back breaks the hash
    (runner.registry.files_of("word_count") / "tool.py").write_text(GOOD["code"] + "\n")
    fresh = build_runner(settings_for(tmp_path))
    assert fresh.registry.load()[0].status == BROKEN


def test_a_new_version_replaces_the_old_only_once_its_tests_pass(tmp_path):
    seen_during_forge = []

    def wrong_while_calling_the_old(messages):
        seen_during_forge.append(forge.call("word_count", {"text": "x y"}))
        return WRONG

    forge, server = scripted_forge(tmp_path, [GOOD, wrong_while_calling_the_old, revised(WRONG), WRONG,
                                              SPLITTING])
    try:
        assert forge.forge("count words").tool.version == 1
        failed = forge.forge("count words better")
        # the failed replacement left version 1 in place and usable, on disk and in memory
        assert not failed.ok and seen_during_forge[0].ok and seen_during_forge[0].value == 2
        assert forge.registry.get("word_count").version == 1 and forge.call("word_count", {"text": "a b c"}).value == 3
        assert json.loads((forge.registry.path_of("word_count") / "manifest.json").read_text())["version"] == 1
        replaced = forge.forge("count words by splitting")
    finally:
        server.__exit__()
    assert replaced.ok and replaced.tool.version == 2 and "(version 2)" in replaced.summary
    folder = forge.registry.path_of("word_count")
    assert json.loads((folder / "manifest.json").read_text())["version"] == 2
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "v2"]  # v1's files removed after the switch
    reloaded = build_registry(settings_for(tmp_path))
    tool = reloaded.load()[0]
    assert tool.version == 2 and tool.status == OK and "text.split()" in tool.source


def test_manifest_writes_are_atomic(tmp_path, monkeypatch):
    registry = build_registry(settings_for(tmp_path))
    tool = Tool(name="word_count", docstring="d", signature="word_count(text)", spec="s", source=GOOD["code"],
                tests=GOOD_TESTS, test_names=["test_1", "test_2"], model="m")
    folder = registry.save(tool)
    before = (folder / "manifest.json").read_text()
    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(registry_module.os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])

    def failing_replace(src, dst):
        order.append(f"replace {Path(dst).name}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry_module.os, "replace", failing_replace)
    newer = Tool(**{**tool.as_map(), "source": SPLITTING["code"], "version": 0})
    with pytest.raises(OSError, match="No space left"):
        registry.save(newer)
    with pytest.raises(OSError, match="No space left"):
        registry.set_status("word_count", BROKEN, {"error": "x"})
    assert order[-1] == "replace manifest.json" and order[-2] == "fsync"  # data on disk before the rename
    monkeypatch.setattr(registry_module.os, "replace", real_replace)
    # the interrupted writes left the previous manifest whole and no temp file beside it
    assert (folder / "manifest.json").read_text() == before
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
    reloaded = build_registry(settings_for(tmp_path)).load()
    assert [(t.version, t.status, t.source) for t in reloaded] == [(1, OK, GOOD["code"])]
    # the next successful save skips the orphaned v2 files and becomes version 3
    assert registry.save(Tool(**{**tool.as_map(), "source": SPLITTING["code"]})) == folder
    assert json.loads((folder / "manifest.json").read_text())["version"] == 3
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "v3"]


def test_pre_version_tool_folders_still_load(tmp_path):
    folder = tmp_path / "data" / "tools" / "word_count"
    folder.mkdir(parents=True)
    (folder / "tool.py").write_text(GOOD["code"])
    (folder / "test_tool.py").write_text(GOOD_TESTS)
    manifest = {"name": "word_count", "docstring": "d", "signature": "word_count(text)", "spec": "s",
                "test_names": ["test_1"], "model": "m", "created_at": 1.0, "status": "ok", "validation": {},
                "source_hash": registry_module.source_hash(GOOD["code"], GOOD_TESTS)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    registry = build_registry(settings_for(tmp_path))
    tool = registry.load()[0]
    assert tool.version == 1 and tool.status == OK and registry.files_of("word_count") == folder
    registry.save(Tool(**{**tool.as_map(), "source": SPLITTING["code"]}))
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "v2"]


# --- a sandbox that breaks: failed outcomes and verdicts, never exceptions -------------------------------

class FailingSandbox:
    """An executor whose runs fail the way a broken sandbox fails (the real exception types)."""

    backend_name = "runsc"

    def __init__(self, error: BaseException):
        self.error, self.runs = error, 0

    def select_backend(self) -> str:
        return self.backend_name

    def run_python(self, source, *, files=None, stdin=None, timeout_s=None, cancel=None):
        self.runs += 1
        raise self.error


SANDBOX_BREAKS = [SandboxFailure("runsc run 1234 failed: [Errno 2] No such file or directory: 'runsc'"),
                  subprocess.TimeoutExpired(["runsc", "kill", "--all", "a4ps-1234", "KILL"], 10.0)]


def _registered_tools(tmp_path, names):
    registry = build_registry(settings_for(tmp_path))
    for name in names:
        code = GOOD["code"].replace("word_count", name)
        registry.save(Tool(name=name, docstring="d", signature=f"{name}(text)", spec="s", source=code,
                           tests=GOOD_TESTS.replace("word_count", name), test_names=["test_1", "test_2"],
                           model="m"))
    return registry


@pytest.mark.parametrize("error", SANDBOX_BREAKS, ids=["SandboxFailure", "TimeoutExpired"])
def test_a_broken_sandbox_fails_the_call_not_the_task(tmp_path, error):
    runner = ToolRunner(FailingSandbox(error), _registered_tools(tmp_path, ["word_count"]))
    outcome = runner.call("word_count", {"text": "a b"})
    assert not outcome.ok and outcome.error.startswith("the sandbox failed (not the tool): ")
    assert "runsc" in outcome.error and outcome.summary.startswith("word_count({'text': 'a b'}) failed: the sandbox")
    assert runner.registry.get("word_count").status == OK  # not the tool's fault


@pytest.mark.parametrize("error", SANDBOX_BREAKS, ids=["SandboxFailure", "TimeoutExpired"])
def test_a_broken_sandbox_gives_every_tool_a_verdict_on_revalidation(tmp_path, error):
    registry = _registered_tools(tmp_path, ["first_tool", "second_tool"])
    for tool in registry.all():  # as the backend does on start
        registry.set_status(tool.name, VALIDATING, tool.validation)
    sandbox = FailingSandbox(error)
    statuses = ToolRunner(sandbox, registry).revalidate_all()
    assert statuses == {"first_tool": BROKEN, "second_tool": BROKEN} and sandbox.runs == 2
    for name in statuses:
        assert registry.get(name).validation["error"].startswith("the sandbox failed: ")
        on_disk = json.loads((registry.path_of(name) / "manifest.json").read_text())
        assert on_disk["status"] == BROKEN and on_disk["validation"]["error"].startswith("the sandbox failed")


@pytest.mark.parametrize("error", SANDBOX_BREAKS, ids=["SandboxFailure", "TimeoutExpired"])
def test_a_broken_sandbox_ends_the_forge_as_a_failed_outcome(tmp_path, error):
    server = OllamaStandIn(models=["phi3:mini"], responder=lambda m, msgs, fmt: json.dumps(GOOD))
    with server:
        settings = settings_for(tmp_path, server.host)
        codex = load_codex()
        sandbox = FailingSandbox(error)
        forge = ToolForge(ModelManager(OllamaProvider(settings.models.ollama)), ProtoManager.from_codex(codex, "ollama"),
                          codex, ToolRunner(sandbox, build_registry(settings)), EventBus(), max_retries=3)
        outcome = forge.forge("count words")
    # one model answer, one sandbox run: asking the model again cannot mend the sandbox
    assert not outcome.ok and len(outcome.attempts) == 1 and sandbox.runs == 1
    assert outcome.error.startswith("the sandbox failed while testing the tool: ")
    assert forge.registry.all() == [] and "no tool for 'count words'" in outcome.summary


# --- Stop: a cancelled forge or tool call is stopped in the sandbox and is no tool failure ------------

# A tool that never returns (a runaway loop; the forge allows no sleeping import), as a Stop finds it.
SLOW = {**GOOD, "name": "slow_echo", "docstring": "Echo the text after a long count.",
        "code": 'def slow_echo(text: str) -> str:\n    """Echo the text after a long count."""\n    total = 0\n'
                '    while total >= 0:\n        total += 1\n    return text\n',
        "tests": ["slow_echo('a') == 'a'", "slow_echo('') == ''"]}


def test_a_stop_kills_a_running_tool_call_and_the_tool_stays_usable(tmp_path):
    import threading
    import time

    settings = settings_for(tmp_path)
    registry = build_registry(settings)
    registry.save(Tool(name="slow_echo", docstring="d", signature="slow_echo(text)", spec="s", source=SLOW["code"],
                       tests="def test_1():\n    assert slow_echo('a') == 'a'\n", test_names=["test_1"], model="m"))
    runner = ToolRunner(build_runner(settings).executor, registry)
    runner.executor.select_backend()  # the probe run is not what is timed
    cancel, stopped = threading.Event(), []

    def stop() -> None:
        stopped.append(time.monotonic())
        cancel.set()

    threading.Timer(2.0, stop).start()
    outcome = runner.call("slow_echo", {"text": "hi"}, cancel=cancel)
    returned = time.monotonic()
    assert stopped and outcome.cancelled and not outcome.ok and outcome.error == "cancelled"
    assert outcome.execution["kill_reason"] == "cancelled" and outcome.summary.endswith("was cancelled")
    assert returned - stopped[0] < 1.0, returned - stopped[0]  # the tool never returns
    assert registry.get("slow_echo").status == OK  # a stop says nothing about the tool
    assert runner.call("slow_echo", {"text": "hi"}, cancel=cancel).cancelled  # stopped before it starts


def test_a_stop_during_the_forge_test_run_ends_the_forge_cancelled_without_a_retry(tmp_path):
    """The model's answer is tested in the sandbox; a Stop there kills the run, and the forge neither
    feeds the kill back to the model as a failure nor asks it again."""
    import threading
    import time

    cancel, stopped = threading.Event(), []

    def stop() -> None:
        stopped.append(time.monotonic())
        cancel.set()

    def answer(messages):
        threading.Timer(3.0, stop).start()  # well after the answer, while its tests run (they never end)
        return SLOW

    forge, server = scripted_forge(tmp_path, [answer, GOOD])
    try:
        forge.runner.executor.select_backend()
        started = time.monotonic()
        outcome = forge.forge("echo a text slowly", cancel=cancel)
        returned = time.monotonic()
    finally:
        server.__exit__()
    assert stopped and outcome.cancelled and not outcome.ok and outcome.error == "cancelled"
    assert len(outcome.attempts) == 1 and outcome.attempts[0]["error"] == "cancelled"
    assert "validation" not in outcome.attempts[0]  # no verdict on the tool was recorded
    assert len([r for r in server.requests if r[0] == "/api/chat"]) == 1  # the model was not asked again
    assert forge.registry.all() == [] and "was cancelled" in outcome.summary
    assert returned - stopped[0] < 1.0, returned - stopped[0]
    assert started < stopped[0]


def test_a_stop_while_the_model_writes_the_tool_ends_the_forge_cancelled(tmp_path):
    """The forge's model call is stopped too (here while Ollama has not answered yet)."""
    import threading
    import time

    cancel, stopped = threading.Event(), []

    def stop() -> None:
        stopped.append(time.monotonic())
        cancel.set()

    forge, server = scripted_forge(tmp_path, [GOOD])
    server.first_token_delay_s = 60
    try:
        threading.Timer(1.0, stop).start()
        outcome = forge.forge("count the words in a text", cancel=cancel)
        returned = time.monotonic()
    finally:
        server.__exit__()
    assert outcome.cancelled and len(outcome.attempts) == 1 and outcome.attempts[0]["error"] == "cancelled"
    assert returned - stopped[0] < 1.0, returned - stopped[0]
    assert server.disconnects  # the model's request was closed, not left running
    assert forge.registry.all() == []


# --- hidden cases (the benchmark's and the capable-model test's check) --------------------------------

def test_hidden_cases_run_in_the_sandbox_through_the_driver(tmp_path):
    executor = build_runner(settings_for(tmp_path)).executor
    right = "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n"
    assert all(r.ok for r in run_cases(executor, "gcd", right, GCD_CASES))
    wrong = run_cases(executor, "gcd", "def gcd(a, b):\n    return min(a, b)\n", GCD_CASES[:3])
    assert [r.ok for r in wrong] == [False, False, False] and wrong[0].got == 12 and wrong[0].error == ""
    raising = run_cases(executor, "gcd", "def gcd(a, b):\n    return a // 0\n", GCD_CASES[:1])
    assert not raising[0].ok and "ZeroDivisionError" in raising[0].error and "a // 0" in raising[0].error
    pair = "def pair(a, b):\n    return (a / 3, a == b)\n"
    assert run_cases(executor, "pair", pair, [([1, 1], [0.333333333, True])])[0].ok  # tuple as list, float tolerance
    assert not run_cases(executor, "pair", pair, [([1, 2], [1 / 3, 0])])[0].ok  # False is not 0


# --- real models ---------------------------------------------------------------------------------------

def _embedded_forge(tmp_path, retries: int, model_path: str = ""):
    """A forge on the embedded provider: the tests' plumbing model unless `model_path` names a GGUF."""
    settings = settings_for(tmp_path)
    if model_path:
        settings.models.embedded.model_path = model_path
    settings.forge.max_retries = retries
    codex = load_codex()
    models = ModelManager(EmbeddedProvider(settings.models.embedded))
    return build_forge(settings, codex, models, ProtoManager.from_codex(codex, "embedded"), EventBus()), models


def test_one_forge_round_on_the_small_embedded_model(tmp_path):
    """Plumbing on SmolLM2 (too weak to count on a working tool): its grammar-bound answer is a
    schema-valid tool that reaches the checks, and the outcome agrees with the registry."""
    forge, models = _embedded_forge(tmp_path, retries=1)
    try:
        outcome = forge.forge("return the sum of a list of numbers")
    finally:
        models.unload()
    assert len(outcome.attempts) == 1
    attempt = outcome.attempts[0]
    assert "no valid tool answer" not in attempt.get("error", "")
    assert re.fullmatch(TOOL_NAME_PATTERN, attempt["name"]) and attempt["model_s"] > 0
    assert outcome.ok == (forge.registry.get(attempt["name"]) is not None) == (not attempt.get("error"))
    if "validation" in attempt:  # it reached the sandbox: the record says what ran
        assert attempt["validation"]["backend"] in ("runsc", "bwrap", "docker")


@pytest.mark.capable_model
@pytest.mark.skipif(not QWEN.is_file(), reason=f"the capable model is not at {QWEN}")
def test_capable_model_qwen_forges_gcd_that_passes_hidden_cases(tmp_path):
    """Quality on Qwen2.5-Coder-1.5B: the issue's failing spec now yields a registered tool that is
    right on cases the model never saw (run in the sandbox through the trusted driver)."""
    forge, models = _embedded_forge(tmp_path, retries=load_settings().forge.max_retries, model_path=str(QWEN))
    try:
        outcome = forge.forge("a function that returns the greatest common divisor of two positive integers")
    finally:
        models.unload()
    assert outcome.ok, outcome.attempts
    tool = forge.registry.get(outcome.tool.name)
    assert tool.status == OK and tool.docstring  # the docstring is in the stored source itself:
    assert check_tool(tool.name, tool.source, tool.tests).docstring == tool.docstring
    results = run_cases(forge.runner.executor, tool.name, tool.source, GCD_CASES)
    assert [r.got for r in results] == [expected for _, expected in GCD_CASES], [r.error for r in results]


# --- the CLI -------------------------------------------------------------------------------------------

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
    assert "ok       word_count(text: str) -> int  v1" in run_cli(env, "tools").stdout
    called = run_cli(env, "tool", "word_count", '{"text": "a b"}')
    assert called.returncode == 0 and json.loads(called.stdout)["value"] == 2
    assert run_cli(env, "tool", "word_count", "{not json").returncode == 2
