"""A final answer's code checked before it is given (a4ps.forge.code_check): names it never defines or
imports are found on the AST (a standard-library module is imported for it), its checks run in the
real sandbox, and every failure, hostile code's included, comes back as a reason, never an exception."""

from __future__ import annotations

import threading

import pytest

from a4ps.backend.compose import build_executor
from a4ps.forge.code_check import CHECKS, CODE, CodeCheck, add_missing_imports, better, check_code, undefined_names
from a4ps.models.structured import validate
from a4ps.sandbox import SandboxFailure
from tests.test_forge import FailingSandbox, settings_for

IS_PRIME = ["def is_prime(n):", "    if n < 2:", "        return False",
            "    for d in range(2, int(math.sqrt(n)) + 1):", "        if n % d == 0:", "            return False",
            "    return True"]
PRIME_CHECKS = ["is_prime(7) == True", "is_prime(10) == False", "is_prime(1) == False"]
FIZZ_LIST = ["def fizzbuzz(n):", "    out = []", "    for i in range(1, n + 1):",
             "        out.append('Fizz' if i % 3 == 0 else str(i))", "    return out"]


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    return build_executor(settings_for(tmp_path_factory.mktemp("code-check")))


@pytest.mark.parametrize("source, names", [
    ("def f(n):\n    return math.sqrt(n)", ["math"]),
    ("import math\ndef f(n):\n    return math.sqrt(n)", []),
    ("from math import sqrt\ndef f(n):\n    return sqrt(n)", []),
    ("def f(s):\n    return helper(s)\ndef helper(s):\n    return [c for c in s]", []),
    ("def f(s):\n    return helper(s)", ["helper"]),
    ("def f(n):\n    def g(k):\n        return k + n + q\n    return g(1)", ["q"]),
    ("LIMIT = 3\nclass A:\n    pass\ndef f(x):\n    return A(), LIMIT, len(x), print", []),
    ("total = missing + 1", ["missing"]),
])
def test_names_used_but_never_defined_or_imported_are_found(source, names):
    assert undefined_names(source) == names


def test_a_missing_standard_library_import_is_added_and_said():
    lines, repairs = add_missing_imports(["def f(s):", "    return re.sub('a', '', s), math.pi, helper"])
    assert lines[:2] == ["import re", "import math"] and repairs == ["added the missing `import re`",
                                                                     "added the missing `import math`"]
    assert add_missing_imports(["import math", *IS_PRIME]) == (["import math", *IS_PRIME], [])


def test_code_that_passes_its_checks_in_the_sandbox(executor):
    validate({"lines": IS_PRIME}, CODE) and validate({"checks": PRIME_CHECKS}, CHECKS)
    check = check_code(executor, IS_PRIME, PRIME_CHECKS)
    assert check.ok and check.passed == 3, check
    assert check.lines[0] == "import math" and check.repairs == ("added the missing `import math`",)
    assert check.summary == "the code passed its 3 checks in the sandbox"


def test_a_failed_check_says_what_the_call_returned_and_what_was_expected(executor):
    check = check_code(executor, FIZZ_LIST, ["fizzbuzz(3) == 'Fizz'", "assert fizzbuzz(4) == '4'"])
    assert not check.ok and not check.broken and check.passed == 0 and len(check.failures) == 2
    assert check.failures[0].startswith("check 1 (`fizzbuzz(3) == 'Fizz'`) failed: fizzbuzz(3) returned ['1', '2', 'Fizz']")
    assert "expects it to equal 'Fizz'" in check.failures[0]


@pytest.mark.parametrize("lines, checks, reason", [
    (["def f(x):", "    return (x"], ["f(1) == 1"], "the code does not parse"),
    (["def f(x):", "    return helper(x)"], ["f(1) == 1"], "uses `helper` but never defines or imports it"),
    (["def f(x):", "    return x"], ["not an expression ="], "no function with checks"),
    (["import numpy_that_is_not_there", "def f(x):", "    return x"], ["f(1) == 1"], "failed to load"),
    (["def f(x):", "    while True:", "        pass"], ["f(1) == 1"], "the sandbox killed the run (timeout)"),
    (["def f(x):", "    return x\x00"], ["f(1) == 1"], "the code does not parse"),
    (["def f(x):", "    return x"], ["f(1) == 1\x00"], "no function with checks"),
], ids=["syntax", "undefined", "bad-check", "import-error", "endless", "null-in-code", "null-in-check"])
def test_broken_code_is_a_reason_never_an_exception(executor, lines, checks, reason):
    check = check_code(executor, lines, checks, timeout_s=3)
    assert not check.ok and reason in check.summary, check


def test_hostile_checks_run_only_in_the_sandbox(executor, tmp_path):
    marker = tmp_path / "escaped"
    hostile = f"open({str(marker)!r}, 'w').write('x') or True"
    check = check_code(executor, ["def f(x):", "    return x"], ["f(1) == 1", hostile])
    assert not marker.exists()
    assert check.passed >= 1


def test_a_broken_sandbox_or_a_stop_is_no_failure_of_the_code(executor, tmp_path):
    broken = check_code(FailingSandbox(SandboxFailure("runsc exploded")), IS_PRIME, PRIME_CHECKS)
    assert broken.sandbox_fault and not broken.ok and not broken.broken and "runsc exploded" in broken.summary
    stop = threading.Event()
    stop.set()
    stopped = check_code(executor, ["def f(x):", "    while True:", "        pass"], ["f(1) == 1"], cancel=stop)
    assert stopped.cancelled and not stopped.ok


def test_the_version_given_passes_else_fails_least_and_a_tie_keeps_the_first():
    passing = CodeCheck(("a",), ("c",), passed=3, ran=True)
    one_fail = CodeCheck(("b",), ("c",), failures=("x",), passed=2, ran=True)
    two_fail = CodeCheck(("c",), ("c",), failures=("x", "y"), passed=0, ran=True)
    broken = CodeCheck(("d",), ("c",), failures=("the code does not parse",))
    assert better(one_fail, passing) is passing and better(passing, one_fail) is passing
    assert better(two_fail, one_fail) is one_fail and better(broken, two_fail) is two_fail
    assert better(one_fail, CodeCheck(("e",), ("c",), failures=("z",), passed=2, ran=True)) is one_fail
