"""BRICK's one-off program (a4ps.forge.program), run in the real sandbox: its number comes back; a
program that fails, loops, gives no number or attacks the sandbox is a failed outcome with a clear
reason, never an exception; a Stop kills it."""

from __future__ import annotations

import threading
import time

import pytest

from a4ps.backend.compose import build_executor
from a4ps.forge.harness import sandbox_error
from a4ps.forge.program import PROGRAM, run_program, source
from a4ps.models.structured import validate
from a4ps.sandbox import SandboxFailure
from tests.test_forge import FailingSandbox, settings_for

SEVENS = ["# how many times the digit 7 is written from 1 to 100", "count = 0", "for i in range(1, 101):",
          "    count += str(i).count('7')", "answer = count"]


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    return build_executor(settings_for(tmp_path_factory.mktemp("program")))


def test_the_lines_become_a_function_that_returns_answer():
    assert source(["x = 2", "", "answer = x * 3"]) == "def compute():\n    x = 2\n\n    answer = x * 3\n    return answer\n"
    validate({"lines": SEVENS}, PROGRAM)


def test_a_program_computes_its_number_in_the_sandbox(executor):
    outcome = run_program(executor, SEVENS)
    assert outcome.ok and outcome.number == 20 and not outcome.mendable, outcome
    assert outcome.summary == "the program ran in the sandbox and computed 20"
    assert outcome.execution["backend"] == executor.backend_name
    printed = run_program(executor, ["print('working')", "answer = 2.5"])
    assert printed.number == 2.5 and "working" in printed.output  # its prints cannot pose as the result


@pytest.mark.parametrize("lines, reason", [
    (["total = 1"], "NameError"),                                     # never assigned answer
    (["answer = 1 / 0"], "ZeroDivisionError"),
    (["answer = (", "1"], "SyntaxError"),
    (["while True:", "    pass"], "time limit"),                      # killed by the sandbox's timeout
    (["answer = open('/etc/shadow').read()"], "Error"),              # the sandbox does not have it to give
])
def test_a_program_that_fails_is_a_failed_outcome_with_its_reason(executor, lines, reason):
    outcome = run_program(executor, lines, timeout_s=3)
    assert not outcome.ok and outcome.number is None and reason in outcome.error, outcome
    assert outcome.summary.startswith("the program failed: ")
    assert outcome.mendable  # its author is shown why and may fix it


@pytest.mark.parametrize("value", ["'twenty'", "True", "float('inf')", "[1, 2]"])
def test_an_answer_that_is_no_finite_number_gives_no_number(executor, value):
    outcome = run_program(executor, [f"answer = {value}"])
    assert outcome.ok and outcome.number is None and "is not a number" in outcome.summary, outcome
    assert outcome.mendable


def test_a_broken_sandbox_is_a_failed_outcome_not_an_exception():
    error = SandboxFailure("runsc run 1 failed")
    outcome = run_program(FailingSandbox(error), SEVENS)
    assert not outcome.ok and outcome.error == f"the sandbox failed (not the program): {sandbox_error(error)}"
    assert not outcome.mendable  # nothing for the program's author to fix


def test_a_stop_kills_the_program(executor):
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    started = time.monotonic()
    outcome = run_program(executor, ["while True:", "    pass"], timeout_s=30, cancel=cancel)
    assert outcome.cancelled and outcome.number is None and time.monotonic() - started < 10
    assert not outcome.mendable
    cancel.set()
    assert run_program(executor, SEVENS, cancel=cancel).cancelled  # a stop before it starts: never run
