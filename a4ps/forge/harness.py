"""The trusted driver that runs a tool's tests, or one call, inside the sandbox.

The driver source below is sent to the sandbox as main.py; the tool and its tests travel as files
and the request (mode, arguments, a per-run nonce) on stdin. The result is one line starting with
the nonce, so output the tool prints cannot be mistaken for it by accident.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from a4ps.sandbox import ExecutionResult, SecureCodeExecutor

TOOL_FILE, TESTS_FILE = "tool_source.py", "tool_tests.py"
MAX_CAPTURE = 4000

DRIVER = r'''
import contextlib, io, json, sys, traceback

request = json.loads(sys.stdin.read())
nonce = request.pop("nonce")
captured = io.StringIO()
result = {}


def _short(exc):
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-600:]


def _plain(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


try:
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        namespace = {"__name__": "a4ps_tool"}
        with open("tool_source.py", encoding="utf-8") as handle:
            exec(compile(handle.read(), "tool_source.py", "exec"), namespace)
        function = namespace[request["name"]]
        if request["mode"] == "test":
            tests = dict(namespace)
            with open("tool_tests.py", encoding="utf-8") as handle:
                exec(compile(handle.read(), "tool_tests.py", "exec"), tests)
            passed, failed = [], []
            for test_name in request["tests"]:
                try:
                    tests[test_name]()
                    passed.append(test_name)
                except BaseException as exc:
                    failed.append({"test": test_name, "error": _short(exc) or type(exc).__name__})
            result = {"passed": passed, "failed": failed}
        else:
            result = {"value": _plain(function(**request["arguments"]))}
except BaseException as exc:
    result = {"error": _short(exc) or type(exc).__name__}
result["output"] = captured.getvalue()[-%d:]
sys.stdout.write("\n" + nonce + " " + json.dumps(result) + "\n")
''' % MAX_CAPTURE


@dataclass(frozen=True)
class HarnessReport:
    """What the driver said (None when it never got to say anything) plus the sandbox's own record."""

    data: dict[str, Any] | None
    execution: ExecutionResult

    @property
    def problem(self) -> str:
        """Empty when the driver reported; else why not (timeout, memory, crash)."""
        if self.data is not None:
            return ""
        ex = self.execution
        if ex.killed:
            return f"the sandbox killed the run ({ex.kill_reason}) after {ex.wall_ms:.0f} ms"
        return f"the run ended without a result (exit {ex.exit_code}): {(ex.stderr or ex.stdout)[-400:]}"


def run_in_sandbox(executor: SecureCodeExecutor, name: str, code: str, *, tests: str = "",
                   test_names: tuple[str, ...] = (), arguments: dict | None = None,
                   timeout_s: float | None = None) -> HarnessReport:
    """mode 'test' when test_names are given, else one call with `arguments`."""
    nonce = secrets.token_hex(16)
    request = {"nonce": nonce, "name": name, "mode": "test" if test_names else "call",
               "tests": list(test_names), "arguments": arguments or {}}
    files = {TOOL_FILE: code}
    if test_names:
        files[TESTS_FILE] = tests
    execution = executor.run_python(DRIVER, files=files, stdin=json.dumps(request).encode(), timeout_s=timeout_s)
    data = None
    for line in reversed(execution.stdout.splitlines()):
        if line.startswith(nonce + " "):
            try:
                data = json.loads(line[len(nonce) + 1:])
            except json.JSONDecodeError:
                data = None
            break
    return HarnessReport(data, execution)
