"""The trusted driver that runs a tool's tests, or one call, inside the sandbox.

The driver source below is sent to the sandbox as main.py; the tool and its tests travel as files
and the request (mode, arguments, a per-run nonce) on stdin. The result is one line starting with
the nonce, so output the tool prints cannot be mistaken for it by accident.

A failed test is reported so that a model can act on it: the assert's line, what each side of the
comparison evaluated to (re-evaluated inside the sandbox, in the test's frame), or the exception and
the tool line that raised it. `run_cases` calls a tool on cases its author never saw.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from a4ps.sandbox import ExecutionResult, SandboxFailure, SandboxUnavailable, SecureCodeExecutor

log = logging.getLogger(__name__)

TOOL_FILE, TESTS_FILE = "tool_source.py", "tool_tests.py"
MAX_CAPTURE = 4000

# The sandbox itself broke (not the guest): a stuck runtime control command raises TimeoutExpired.
SANDBOX_ERRORS = (SandboxFailure, subprocess.TimeoutExpired, OSError)


def sandbox_error(exc: BaseException) -> str:
    if isinstance(exc, subprocess.TimeoutExpired):
        command = exc.cmd[0] if isinstance(exc.cmd, (list, tuple)) and exc.cmd else exc.cmd
        return f"the sandbox command {command!r} timed out after {exc.timeout} s"
    return f"{type(exc).__name__}: {exc}"


DRIVER = r'''
import ast, contextlib, io, json, sys, traceback

request = json.loads(sys.stdin.read())
nonce = request.pop("nonce")
captured = io.StringIO()
result = {}
sources = {}
OPS = {"Eq": "==", "NotEq": "!=", "Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=", "Is": "is", "IsNot": "is not",
       "In": "in", "NotIn": "not in"}


def _short(exc):
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-600:]


def _plain(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _shown(value):
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _line(filename, lineno):
    lines = sources.get(filename, "").splitlines()
    return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""


def _frames(exc, filename):
    return [(f, n) for f, n in traceback.walk_tb(exc.__traceback__) if f.f_code.co_filename == filename]


def _assert_values(frame, lineno):
    # what each side of the failed assert evaluated to (the test's own expression, re-evaluated here)
    try:
        module = ast.parse(sources["tool_tests.py"])
    except SyntaxError:
        return {}
    found = [n for n in ast.walk(module) if isinstance(n, ast.Assert) and n.lineno <= lineno <= n.end_lineno]
    if not found:
        return {}
    test = found[-1].test

    def value(node):
        code = compile(ast.Expression(node), "tool_tests.py", "eval")
        return eval(code, frame.f_globals, frame.f_locals)

    try:
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            return {"call": ast.unparse(test.left), "got": _shown(value(test.left)),
                    "expected": _shown(value(test.comparators[0])), "op": OPS.get(type(test.ops[0]).__name__, "")}
        node = test.operand if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) else test
        return {"call": ast.unparse(node), "got": _shown(value(node))}
    except BaseException as exc:
        return {"call": ast.unparse(test), "got": "raised " + _short(exc)}


def _failure(test_name, exc):
    failure = {"test": test_name, "error": _short(exc) or type(exc).__name__}
    in_tests = _frames(exc, "tool_tests.py")
    if in_tests:
        frame, lineno = in_tests[-1]
        failure["line"] = _line("tool_tests.py", lineno)
        if isinstance(exc, AssertionError) and not _frames(exc, "tool_source.py"):
            failure.update(_assert_values(frame, lineno))
    in_tool = _frames(exc, "tool_source.py")
    if in_tool:
        lineno = in_tool[-1][1]
        failure["tool_line"] = _line("tool_source.py", lineno)
    return failure


try:
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        namespace = {"__name__": "a4ps_tool"}
        with open("tool_source.py", encoding="utf-8") as handle:
            sources["tool_source.py"] = handle.read()
        exec(compile(sources["tool_source.py"], "tool_source.py", "exec"), namespace)
        function = namespace[request["name"]]
        if request["mode"] == "test":
            tests = dict(namespace)
            with open("tool_tests.py", encoding="utf-8") as handle:
                sources["tool_tests.py"] = handle.read()
            exec(compile(sources["tool_tests.py"], "tool_tests.py", "exec"), tests)
            passed, failed = [], []
            for test_name in request["tests"]:
                try:
                    tests[test_name]()
                    passed.append(test_name)
                except BaseException as exc:
                    failed.append(_failure(test_name, exc))
            result = {"passed": passed, "failed": failed}
        else:
            try:
                result = {"value": _plain(function(*request.get("args", []), **request["arguments"]))}
            except BaseException as exc:
                result = _failure("call", exc)
except BaseException as exc:
    result = {"error": _short(exc) or type(exc).__name__}
    in_tool = _frames(exc, "tool_source.py")
    if in_tool:
        result["tool_line"] = _line("tool_source.py", in_tool[-1][1])
result["output"] = captured.getvalue()[-MAX_CAPTURE:]
sys.stdout.write("\n" + nonce + " " + json.dumps(result) + "\n")
'''.replace("MAX_CAPTURE", str(MAX_CAPTURE))


_KILL_HINTS = {
    "timeout": "it ran past the time limit: look for an endless loop or work that grows too fast",
    "memory": "it ran out of memory (256 MB): avoid building huge lists or strings",
    "output_limit": "it printed too much: do not print, return the value",
}


@dataclass(frozen=True)
class HarnessReport:
    """What the driver said (None when it never got to say anything) plus the sandbox's own record."""

    data: dict[str, Any] | None
    execution: ExecutionResult

    @property
    def cancelled(self) -> bool:
        """Its caller stopped the run (a Stop): it says nothing about the tool, and is no tool failure."""
        return self.execution.cancelled

    @property
    def problem(self) -> str:
        """Empty when the driver reported; else why not (timeout, memory, crash, cancelled)."""
        if self.cancelled:
            return "the run was cancelled"
        if self.data is not None:
            return ""
        ex = self.execution
        if ex.killed:
            hint = _KILL_HINTS.get(ex.kill_reason or "", "")
            return f"the sandbox killed the run ({ex.kill_reason}) after {ex.wall_ms:.0f} ms" + (f": {hint}" if hint else "")
        return f"the run ended without a result (exit {ex.exit_code}): {(ex.stderr or ex.stdout)[-400:]}"

    @property
    def passed(self) -> bool:
        """A test run in which every test passed."""
        return self.data is not None and not self.data.get("error") and not self.data.get("failed")


def describe_failure(failure: dict[str, Any]) -> str:
    """One failed test as a model can act on it: the assert, what the call returned against what the
    test expected, or the exception and the tool line that raised it."""
    test, error = failure.get("test", "?"), failure.get("error", "")
    line = f" at `{failure['line']}`" if failure.get("line") else ""
    if "got" in failure and "expected" in failure:
        op = failure.get("op") or "=="
        relation = "but the test expects it to equal" if op == "==" else f"but the test requires it {op}"
        return f"{test} failed{line}: {failure['call']} returned {failure['got']}, {relation} {failure['expected']}"
    if "got" in failure:
        return f"{test} failed{line}: {failure['call']} gave {failure['got']}"
    where = f" (raised in the function at `{failure['tool_line']}`)" if failure.get("tool_line") else ""
    return f"{test} failed{line}: {error}{where}"


def run_in_sandbox(executor: SecureCodeExecutor, name: str, code: str, *, tests: str = "",
                   test_names: tuple[str, ...] = (), arguments: dict | None = None, args: list | None = None,
                   timeout_s: float | None = None, cancel: threading.Event | None = None) -> HarnessReport:
    """mode 'test' when test_names are given, else one call with positional `args` and keyword `arguments`.

    Raises what the executor raises when the sandbox itself fails (SandboxUnavailable, SandboxFailure,
    subprocess.TimeoutExpired from a stuck runtime); the guest's own failures are in the report. Once
    `cancel` is set the run is killed and the report is `cancelled` (its data, if any, is not to be used).
    """
    nonce = secrets.token_hex(16)
    request = {"nonce": nonce, "name": name, "mode": "test" if test_names else "call",
               "tests": list(test_names), "arguments": arguments or {}, "args": list(args or [])}
    files = {TOOL_FILE: code}
    if test_names:
        files[TESTS_FILE] = tests
    execution = executor.run_python(DRIVER, files=files, stdin=json.dumps(request).encode(), timeout_s=timeout_s,
                                    cancel=cancel)
    data = None
    if execution.cancelled:
        return HarnessReport(None, execution)
    for line in reversed(execution.stdout.splitlines()):
        if line.startswith(nonce + " "):
            try:
                data = json.loads(line[len(nonce) + 1:])
            except json.JSONDecodeError:
                data = None
            break
    return HarnessReport(data, execution)


def same_value(got: Any, expected: Any) -> bool:
    """Equality as JSON carries it (tuples are lists), floats to 1e-6, booleans only as booleans."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(expected, list) and isinstance(got, list):
        return len(got) == len(expected) and all(same_value(g, e) for g, e in zip(got, expected))
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(same_value(got[k], expected[k]) for k in expected)
    return got == expected


@dataclass(frozen=True)
class CaseResult:
    args: list
    expected: Any
    got: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and same_value(self.got, self.expected)


def run_cases(executor: SecureCodeExecutor, name: str, code: str, cases: list[tuple[list, Any]],
              timeout_s: float | None = None, cancel: threading.Event | None = None) -> list[CaseResult]:
    """Call the tool once per (positional args, expected) case, each in its own sandbox run.

    For checks the tool's author never saw (a benchmark's or a test's hidden cases); sandbox
    failures raise as in run_in_sandbox.
    """
    results = []
    for args, expected in cases:
        expected = json.loads(json.dumps(expected))
        report = run_in_sandbox(executor, name, code, args=list(args), timeout_s=timeout_s, cancel=cancel)
        data = report.data or {}
        error = data.get("error") or report.problem
        if error and data.get("tool_line"):
            error += f" (at `{data['tool_line']}`)"
        results.append(CaseResult(list(args), expected, data.get("value"), error))
    return results


@dataclass(frozen=True)
class SandboxCall:
    """One call's outcome: its value, or why there is none (an error string, never an exception)."""

    value: Any = None
    error: str = ""
    output: str = ""
    execution: dict[str, Any] | None = None
    cancelled: bool = False
    sandbox_fault: bool = False  # the sandbox failed, not the code: nothing for the code's author to mend


def call_in_sandbox(executor: SecureCodeExecutor, name: str, code: str, *, what: str,
                    arguments: dict | None = None, timeout_s: float | None = None,
                    cancel: threading.Event | None = None) -> SandboxCall:
    """Call `name` (a tool, or BRICK's program: `what`) once in the sandbox. Every failure, the
    sandbox's own included, is an error; a Stop is `cancelled`, which is no failure."""
    try:
        report = run_in_sandbox(executor, name, code, arguments=arguments, timeout_s=timeout_s, cancel=cancel)
    except SandboxUnavailable as exc:
        return SandboxCall(error=f"sandbox unavailable: {exc}", sandbox_fault=True)
    except SANDBOX_ERRORS as exc:
        log.warning("sandbox failed while calling %s %s: %s", what, name, sandbox_error(exc))
        return SandboxCall(error=f"the sandbox failed (not the {what}): {sandbox_error(exc)}",
                           sandbox_fault=True)
    if report.cancelled:
        return SandboxCall(error="cancelled", cancelled=True, execution=report.execution.to_dict())
    data = report.data or {}
    error = data.get("error") or report.problem
    if error and data.get("tool_line"):
        error += f" (at `{data['tool_line']}`)"
    return SandboxCall(data.get("value"), error, data.get("output", ""), report.execution.to_dict())
