"""A one-off program BRICK writes to compute a task's number, run once in the sandbox.

Why: a small model working by hand cannot go through a hundred cases without slipping (how often the
digit 7 is written from 1 to 100, the sum of the multiples of 3 or 5 up to 200), while the same model
writes the loop that does it exactly. Unlike a forged tool the program is not kept: it answers one task.

The model gives the program as JSON, one line of code per item (a code model asked for one JSON
string of code often leaves its newlines unescaped); the lines become the body of a function that
returns `answer`, and the trusted driver calls it in the sandbox like a tool.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from a4ps.config.templates import shown
from a4ps.forge.harness import call_in_sandbox
from a4ps.forge.schemas import string_list
from a4ps.sandbox import SecureCodeExecutor

FUNCTION = "compute"
RESULT_NAME = "answer"
MAX_LINES, MAX_LINE_CHARS = 40, 160

# BRICK's program, as JSON lines (see the module docstring).
PROGRAM = string_list("lines", MAX_LINES, MAX_LINE_CHARS)


@dataclass
class ProgramOutcome:
    """What one program run gave: its number, or why there is none."""

    ok: bool
    lines: list[str]
    value: Any = None
    error: str = ""
    output: str = ""
    execution: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    sandbox_fault: bool = False

    @property
    def mendable(self) -> bool:
        """No number, and the program is to blame (not a Stop, not the sandbox): its author may fix it."""
        return self.number is None and not self.cancelled and not self.sandbox_fault

    @property
    def number(self) -> float | None:
        """The finite number the program computed, else None (a bool or a string is no number)."""
        value = self.value
        if not self.ok or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return value

    @property
    def summary(self) -> str:
        if self.cancelled:
            return "the program was cancelled"
        if self.number is not None:
            return f"the program ran in the sandbox and computed {shown(self.number)}"
        if self.ok:
            return f"the program ran but its {RESULT_NAME} is not a number: {str(self.value)[:120]}"
        return f"the program failed: {self.error}"


def source(lines: list[str]) -> str:
    """The program's lines as the body of a function that returns `answer`."""
    body = "\n".join(("    " + line) if line.strip() else "" for line in lines)
    return f"def {FUNCTION}():\n{body}\n    return {RESULT_NAME}\n"


def run_program(executor: SecureCodeExecutor, lines: list[str], *, timeout_s: float | None = None,
                cancel: threading.Event | None = None) -> ProgramOutcome:
    """Run the program once in the sandbox. Every failure, the sandbox's own included, is a failed
    outcome for the graph to fall back from, never an exception."""
    if cancel is not None and cancel.is_set():
        return ProgramOutcome(False, lines, error="cancelled", cancelled=True)
    call = call_in_sandbox(executor, FUNCTION, source(lines), what="program", timeout_s=timeout_s, cancel=cancel)
    return ProgramOutcome(not call.error, lines, value=call.value, error=call.error, output=call.output,
                          execution=call.execution or {}, cancelled=call.cancelled,
                          sandbox_fault=call.sandbox_fault)
