"""The code of a final answer, checked before the person gets it: read on its AST, then run on checks
in the sandbox.

Why: measured on the quality bench's code tasks, the society's final code was worse than one plain
call's (5 of 8 against 8): rewriting BRICK's function into the answer, ALFRED dropped its
`import math`, and a function returned a list where the task asked for one string. Neither shows
until the code runs. A name the code uses but never defines or imports is found on the AST (a
standard-library module name is imported for the author: the one sensible reading); the checks, one
expression each that calls the function on a small input and compares it with what the task says it
must return, run in the sandbox through the trusted harness. Nothing model-written runs here.
"""

from __future__ import annotations

import ast
import builtins
import symtable
import sys
import threading
from dataclasses import dataclass

from a4ps.forge.checks import assert_expression, tests_from_asserts
from a4ps.forge.harness import SANDBOX_ERRORS, describe_failure, run_in_sandbox, sandbox_error
from a4ps.forge.schemas import string_list
from a4ps.sandbox import SandboxUnavailable, SecureCodeExecutor

MAX_LINES, MAX_LINE_CHARS, MAX_CHECKS, MAX_CHECK_CHARS = 60, 160, 4, 200

# The final code, as JSON lines (a code model asked for one JSON string of code often leaves its
# newlines unescaped; see a4ps.forge.program), and its checks, asked after it: asked in one object, the
# model closed its code with a line "checks" (it meant to start the next key), measured.
CODE = string_list("lines", MAX_LINES, MAX_LINE_CHARS)
CHECKS = string_list("checks", MAX_CHECKS, MAX_CHECK_CHARS)
_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__"}


@dataclass(frozen=True)
class CodeCheck:
    """One version of the code and what checking it found; `failures` empty means it passed."""

    lines: tuple[str, ...]
    checks: tuple[str, ...]
    failures: tuple[str, ...] = ()
    passed: int = 0
    ran: bool = False  # the checks were run (the code loaded)
    repairs: tuple[str, ...] = ()
    sandbox_fault: bool = False
    cancelled: bool = False

    @property
    def code(self) -> str:
        return "\n".join(self.lines)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.sandbox_fault and not self.cancelled

    @property
    def broken(self) -> bool:
        """It does not even load (a syntax error, an undefined name): worse than any failed check."""
        return not self.ran and bool(self.failures) and not self.sandbox_fault

    @property
    def summary(self) -> str:
        if self.cancelled:
            return "the check was cancelled"
        if self.sandbox_fault:
            return "the code could not be run: " + "; ".join(self.failures)
        if self.ok:
            return f"the code passed its {self.passed} check{'s' if self.passed != 1 else ''} in the sandbox"
        return "; ".join(self.failures)


def undefined_names(source: str) -> list[str]:
    """Names the code reads as globals that it never binds at its top level (def, class, import,
    assignment) and that are no builtins. Raises SyntaxError."""
    table = symtable.symtable(source, "answer.py", "exec")
    bound = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    missing: list[str] = []

    def visit(scope: symtable.SymbolTable) -> None:
        for symbol in scope.get_symbols():
            name = symbol.get_name()
            read_globally = symbol.is_referenced() and (scope is table or symbol.is_global())
            if read_globally and name not in bound and name not in _BUILTINS and name not in missing:
                missing.append(name)
        for child in scope.get_children():
            visit(child)

    visit(table)
    return missing


def add_missing_imports(lines: list[str]) -> tuple[list[str], list[str]]:
    """(lines, repairs): a standard-library module used but never imported is imported at the top."""
    modules = [n for n in undefined_names("\n".join(lines)) if n in sys.stdlib_module_names]
    if not modules:
        return lines, []
    return [f"import {m}" for m in modules] + lines, [f"added the missing `import {m}`" for m in modules]


def _function(tree: ast.Module, checks: list[str]) -> str | None:
    """The function the checks call, else the code's first top-level function."""
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for check in checks:
        for node in ast.walk(ast.parse(check, mode="eval")):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defined:
                return node.func.id
    return defined[0] if defined else None


def _usable(check: str) -> bool:
    try:
        ast.parse(check, mode="eval")
    except (SyntaxError, ValueError):  # ValueError: a null byte (JSON lets "\u0000" through)
        return False
    return bool(check)


def check_code(executor: SecureCodeExecutor, lines: list[str], checks: list[str], *,
               timeout_s: float | None = None, cancel: threading.Event | None = None) -> CodeCheck:
    """Read the code, then run each check on it in the sandbox. Every failure, the sandbox's own
    included, is in the result, never an exception."""
    lines, repairs = [line.rstrip() for line in lines], []
    checks = [c for c in map(assert_expression, checks) if _usable(c)]  # "assert f(1) == 1" is a check too
    try:
        lines, repairs = add_missing_imports(lines)
        tree = ast.parse("\n".join(lines))
    except SyntaxError as exc:
        where = f" at `{exc.text.strip()}`" if exc.text and exc.text.strip() else ""
        return CodeCheck(tuple(lines), tuple(checks), (f"the code does not parse: {exc.msg}{where}",))
    except ValueError as exc:  # a null byte in the code
        return CodeCheck(tuple(lines), tuple(checks), (f"the code does not parse: {exc}",))
    result = CodeCheck(tuple(lines), tuple(checks), repairs=tuple(repairs))
    undefined = undefined_names("\n".join(lines))
    if undefined:
        named = ", ".join(f"`{n}`" for n in undefined)
        return _with(result, failures=(f"the code uses {named} but never defines or imports it",))
    name = _function(tree, checks)
    if name is None or not checks:
        return _with(result, failures=("there is no function with checks that call it to run",))
    tests = tests_from_asserts(checks)
    try:
        report = run_in_sandbox(executor, name, "\n".join(lines) + "\n", tests=tests,
                                test_names=tuple(f"test_{i}" for i in range(1, len(checks) + 1)),
                                timeout_s=timeout_s, cancel=cancel)
    except (SandboxUnavailable, *SANDBOX_ERRORS) as exc:
        return _with(result, failures=(sandbox_error(exc),), sandbox_fault=True)
    if report.cancelled:
        return _with(result, cancelled=True)
    data = report.data or {}
    if report.problem or data.get("error"):
        line = f" (at `{data['tool_line']}`)" if data.get("tool_line") else ""
        return _with(result, failures=((report.problem or f"the code failed to load: {data['error']}") + line,))
    failures = []
    for failure in data.get("failed", []):
        failure = {k: v for k, v in failure.items() if k != "line"}  # the check is named instead
        number = int(str(failure.get("test", "test_0")).rsplit("_", 1)[-1] or 0)
        failure["test"] = f"check {number} (`{checks[number - 1]}`)" if 0 < number <= len(checks) else "a check"
        failures.append(describe_failure(failure))
    return _with(result, failures=tuple(failures), passed=len(data.get("passed", [])), ran=True)


def _with(result: CodeCheck, **changes) -> CodeCheck:
    return CodeCheck(**{**result.__dict__, **changes})


def better(first: CodeCheck, second: CodeCheck) -> CodeCheck:
    """The version to give: the one that passes; else the one that loads and passes more checks; a tie
    keeps the first."""
    def rank(check: CodeCheck) -> tuple:
        return (check.ok, not check.broken, check.passed - len(check.failures))

    return second if rank(second) > rank(first) else first


__all__ = ["CHECKS", "CODE", "CodeCheck", "add_missing_imports", "better", "check_code", "undefined_names"]
