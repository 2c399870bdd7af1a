"""ToolForge: ask BRICK for a tool (schema-constrained), check its AST, run its tests in the sandbox,
feed failures back, and register what passes. Tool calls also run only in the sandbox.

The forge works with the model rather than against it: mechanical slips are repaired instead of
refused (checks.prepare_tool), every refusal says exactly what to change (the rule and its fix; the
failed assert with what the call returned against what the test expected; the exception and the
tool line that raised it), and a retry shows the model its previous answer so that it edits it.
A sandbox that breaks (not the tool) ends the request as a failed outcome; it never escapes.
A Stop (the `cancel` event) ends a forge or a tool call as `cancelled`, which is not a tool failure:
the model call and the sandbox run in progress are stopped and nothing is fed back to the model.
"""

from __future__ import annotations

import ast

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from a4ps.config.schema import Codex
from a4ps.config.templates import render
from a4ps.events import EventBus
from a4ps.forge import schemas
from a4ps.forge.checks import ToolCheckError, assert_expression, check_tool, prepare_tool
from a4ps.forge.code_check import CodeCheck, check_code
from a4ps.forge.harness import SANDBOX_ERRORS, HarnessReport, call_in_sandbox, describe_failure, run_in_sandbox
from a4ps.forge.harness import sandbox_error as _sandbox_error
from a4ps.forge.program import ProgramOutcome, run_program
from a4ps.forge.registry import BROKEN, OK, Tool, ToolRegistry
from a4ps.models import ModelError, ModelManager
from a4ps.models.types import CODE_REPEAT_PENALTY, ModelCancelled, Sampling
from a4ps.protos import ProtoManager
from a4ps.sandbox import SandboxUnavailable, SecureCodeExecutor

log = logging.getLogger(__name__)

FORGING_PERSONA = "BRICK"
# Code wants near-greedy decoding and at most a light repeat penalty (see CODE_REPEAT_PENALTY).
FORGE_TEMPERATURE, FORGE_TOP_P, FORGE_REPEAT_PENALTY = 0.2, 0.9, CODE_REPEAT_PENALTY
# After a revision failed too, the next attempt starts afresh, sampled hotter: asked again on the same
# conversation a small model repeats its revision word for word (measured: attempts 2 and 3 identical).
FRESH_TEMPERATURE = 0.8
MAX_FAILURES_SHOWN = 3
CANCELLED = "cancelled"
@dataclass
class ForgeOutcome:
    """The result of one forge request, as the dialogue and the CLI show it."""

    ok: bool
    spec: str
    tool: Tool | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    cancelled: bool = False  # stopped by a Stop: not a failure of the tool or the model

    @property
    def summary(self) -> str:
        if self.cancelled:
            return f"forging '{self.spec[:80]}' was cancelled after {len(self.attempts)} attempt(s)"
        if self.ok and self.tool:
            version = f" (version {self.tool.version})" if self.tool.version > 1 else ""
            return (f"tool {self.tool.signature}{version} created after {len(self.attempts)} attempt(s); "
                    f"{len(self.tool.test_names)} test(s) passed in the sandbox: {self.tool.docstring}")
        return f"no tool for '{self.spec[:80]}' after {len(self.attempts)} attempt(s): {self.error}"


@dataclass
class ToolCallOutcome:
    ok: bool
    name: str
    arguments: dict[str, Any]
    value: Any = None
    error: str = ""
    output: str = ""
    execution: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False  # stopped by a Stop: the tool neither failed nor answered

    @property
    def summary(self) -> str:
        if self.cancelled:
            return f"{self.name}({self.arguments}) was cancelled"
        if self.ok:
            return f"{self.name}({self.arguments}) returned {str(self.value)[:300]}"
        return f"{self.name}({self.arguments}) failed: {self.error}"


def _validation_record(report: HarnessReport) -> dict[str, Any]:
    data = report.data or {}
    return {"backend": report.execution.backend, "passed": data.get("passed", []),
            "failed": data.get("failed", []), "error": data.get("error") or report.problem,
            "wall_ms": round(report.execution.wall_ms, 1), "at": time.time()}


def failure_feedback(report: HarnessReport) -> str:
    """What went wrong in a test run, in terms the model can act on."""
    data = report.data
    if data is None:
        return f"the tests could not finish: {report.problem}"
    if data.get("error"):
        where = f" (at `{data['tool_line']}`)" if data.get("tool_line") else ""
        return f"the code failed as soon as it was loaded: {data['error']}{where}"
    failed = data.get("failed", [])
    lines = [describe_failure(f) for f in failed[:MAX_FAILURES_SHOWN]]
    if len(failed) > MAX_FAILURES_SHOWN:
        lines.append(f"... and {len(failed) - MAX_FAILURES_SHOWN} more failed test(s)")
    if data.get("passed"):
        lines.append(f"({len(data['passed'])} other check(s) passed.)")
    return "\n".join(lines)


def _retry_request(problem: str, failures: list[dict[str, Any]]) -> str:
    """The follow-up turn after a failed attempt (the attempt itself is the turn before it).

    When an assert compared a result with an expected value, the model is asked to settle exactly
    that question by hand (its own expected values are as often wrong as its code).
    """
    compared = next((f for f in failures if "got" in f and "expected" in f), None)
    if compared is not None:
        call, got, expected = compared["call"], compared["got"], compared["expected"]
        fix = (f"In diagnosis, work out {call} by hand for the need, step by step, and say which is right: "
               f"{got} (what the function returned) or {expected} (what the test expects). In verdict, say "
               f"which was wrong. If {got} is right, correct that check or remove it; otherwise correct the "
               f"function.")
    elif failures:
        fix = ("In diagnosis, say why the function fails on that input for the need; in verdict, which was "
               "wrong; then correct it.")
    else:
        fix = "In diagnosis, say what you will change (verdict: what was wrong); change only that."
    return (f"That tool was not accepted:\n{problem}\n{fix} Then give the whole corrected tool "
            "(name, docstring, code, tests).")


def _checked_call(check: str) -> str:
    """The call a check makes: the left side of `call == expected`, else the whole expression."""
    expression = assert_expression(check)
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return expression
    return ast.unparse(node.left) if isinstance(node, ast.Compare) and len(node.ops) == 1 else ast.unparse(node)


def _drop_disowned_checks(answer: dict, previous: tuple[dict, str] | None, failed_checks: dict[str, str]) -> list[str]:
    """Apply the model's verdict that its expected values were wrong: with the function unchanged, a
    check on a call that failed last time would fail again, whatever new value it now expects (a
    model that misjudged a value by hand usually misjudges it again); it is dropped, and the rest still
    have to pass. Returns what was dropped, for the attempt's record."""
    if previous is None or answer.get("verdict") != schemas.CHECKS_WRONG or answer["code"] != previous[0]["code"]:
        return []
    kept, dropped = [], []
    for check in answer["tests"]:
        call = _checked_call(check)
        if call in failed_checks and len(answer["tests"]) - len(dropped) > 1:
            dropped.append(f"dropped the check `{assert_expression(check)}` the model judged wrong (the function "
                           f"returns {failed_checks[call]})")
        else:
            kept.append(check)
    answer["tests"] = kept
    return dropped


class ToolForge:
    """Creates tools from specs and runs registered tools; everything model-written runs sandboxed."""

    def __init__(self, models: ModelManager, protos: ProtoManager, codex: Codex, runner: "ToolRunner",
                 bus: EventBus, max_retries: int, max_tokens: int = 900):
        self._models, self._protos, self._codex = models, protos, codex
        self.runner, self.registry, self._executor, self._bus = runner, runner.registry, runner.executor, bus
        self._max_retries, self._max_tokens = max_retries, max_tokens
        self._lock = threading.Lock()

    def describe(self) -> str:
        try:
            sandbox = f"{self._executor.backend_name} sandbox testing"
        except SandboxUnavailable as exc:
            sandbox = f"no sandbox ({exc})"
        return f"{self._models.provider.describe()} writing, {sandbox}"

    def usable_tools(self) -> list[dict[str, Any]]:
        return self.runner.usable_tools()

    def call(self, name: str, arguments: Any, *, cancel: threading.Event | None = None) -> "ToolCallOutcome":
        return self.runner.call(name, arguments, cancel=cancel)

    def revalidate_all(self) -> dict[str, str]:
        return self.runner.revalidate_all()

    def compute(self, lines: list[str], *, cancel: threading.Event | None = None) -> ProgramOutcome:
        """Run a one-off program (a4ps.forge.program) in the sandbox: a task's number, computed."""
        return run_program(self._executor, lines, cancel=cancel)

    def check_code(self, lines: list[str], checks: list[str], *,
                   cancel: threading.Event | None = None) -> CodeCheck:
        """Check a final answer's code (a4ps.forge.code_check): its names, then its checks in the sandbox."""
        return check_code(self._executor, lines, checks, cancel=cancel)

    # --- forging ---------------------------------------------------------------------------------
    def _ask(self, spec: str, previous: tuple[dict, str] | None, on_token: Callable[[str], None] | None,
             cancel: threading.Event | None, temperature: float = FORGE_TEMPERATURE) -> tuple[dict, str]:
        """One schema-constrained answer. After a failure the model sees its own previous answer and
        what was wrong with it (only the last one, so the context stays small)."""
        proto = self._protos.get(FORGING_PERSONA)
        prompt = render(self._codex.prompts.forge, spec=spec, feedback="")
        messages = [{"role": "system", "content": proto.system_prompt}, {"role": "user", "content": prompt}]
        if previous is not None:
            answer, request = previous
            messages += [{"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)},
                         {"role": "user", "content": request}]
        schema = schemas.TOOL if previous is None else schemas.TOOL_REVISION
        result = self._models.chat(
            messages, model=proto.model, schema=schema, on_token=on_token, stream_field="code",
            sampling=Sampling(temperature, FORGE_TOP_P, self._max_tokens,
                              FORGE_REPEAT_PENALTY, should_stop=cancel.is_set if cancel is not None else None))
        self._protos.record_call(FORGING_PERSONA, result.completion_tokens)
        return result.data or {}, proto.model

    def forge(self, spec: str, *, on_token: Callable[[str], None] | None = None,
              cancel: threading.Event | None = None) -> ForgeOutcome:
        """Up to max_retries attempts; each failure (schema, AST, tests) is fed back into the next.

        A tool whose name is already registered becomes that tool's next version, and only once its
        tests pass; until then the registered version stays in use. Once `cancel` is set the model call
        or sandbox run in progress is stopped and the outcome is `cancelled` (not a failed tool).
        """
        outcome = ForgeOutcome(ok=False, spec=spec)
        previous: tuple[dict, str] | None = None
        temperature = min(self._protos.get(FORGING_PERSONA).temperature, FORGE_TEMPERATURE)
        failed_checks: dict[str, str] = {}  # the call of a failed check -> what it returned, in the last test run
        revising = False
        with self._lock:
            for attempt in range(1, self._max_retries + 1):
                if cancel is not None and cancel.is_set():
                    return _cancelled(outcome)
                if revising and previous is not None:  # the revision failed too: start afresh, hotter
                    previous, failed_checks, temperature = None, {}, FRESH_TEMPERATURE
                revising = previous is not None
                record: dict[str, Any] = {"attempt": attempt}
                outcome.attempts.append(record)
                started = time.perf_counter()
                try:
                    answer, model = self._ask(spec, previous, on_token, cancel, temperature)
                except ModelCancelled:
                    record["error"] = CANCELLED
                    return _cancelled(outcome)
                except ModelError as exc:
                    record["error"] = outcome.error = f"no valid tool answer: {exc}"
                    record["seconds"] = round(time.perf_counter() - started, 2)
                    previous = None
                    continue
                record["model_s"] = round(time.perf_counter() - started, 2)
                if answer.get("diagnosis"):
                    record["diagnosis"], record["verdict"] = answer["diagnosis"], answer["verdict"]
                dropped = _drop_disowned_checks(answer, previous, failed_checks)
                prepared = prepare_tool(answer["name"], answer.get("docstring", ""), answer["code"], answer["tests"])
                record["name"] = prepared.name
                if dropped or prepared.repairs:
                    record["repairs"] = [*dropped, *prepared.repairs]
                try:
                    checked = check_tool(prepared.name, prepared.code, prepared.tests)
                except ToolCheckError as exc:
                    record["error"] = outcome.error = str(exc)
                    record["seconds"] = round(time.perf_counter() - started, 2)
                    previous, failed_checks = (answer, _retry_request(exc.feedback, [])), {}
                    continue
                try:
                    report = run_in_sandbox(self._executor, checked.name, prepared.code, tests=prepared.tests,
                                            test_names=checked.test_names, cancel=cancel)
                except SandboxUnavailable as exc:
                    record["error"] = outcome.error = f"sandbox unavailable: {exc}"
                    return outcome  # without a sandbox no tool can ever be validated
                except SANDBOX_ERRORS as exc:  # the sandbox broke, not the tool: retrying the model cannot help
                    log.warning("sandbox failed while testing a forged tool: %s", _sandbox_error(exc))
                    record["error"] = outcome.error = f"the sandbox failed while testing the tool: {_sandbox_error(exc)}"
                    return outcome
                if report.cancelled:  # a Stop, not a verdict on the tool: nothing goes back to the model
                    record["error"] = CANCELLED
                    record["seconds"] = round(time.perf_counter() - started, 2)
                    return _cancelled(outcome)
                validation = _validation_record(report)
                record["validation"] = validation
                record["seconds"] = round(time.perf_counter() - started, 2)
                if not report.passed:
                    problem = failure_feedback(report)
                    record["error"] = outcome.error = problem
                    failures = (report.data or {}).get("failed", [])
                    failed_checks = {_checked_call(f["line"]): f["got"] for f in failures
                                     if f.get("line", "").startswith("assert ") and "got" in f and "expected" in f}
                    previous = (answer, _retry_request(problem, failures))
                    continue
                tool = Tool(name=checked.name, docstring=checked.docstring, signature=checked.signature, spec=spec,
                            source=prepared.code, tests=prepared.tests, test_names=list(checked.test_names),
                            model=model, status=OK, validation=validation)
                try:
                    self.registry.save(tool)
                except OSError as exc:  # a full or read-only disk: the tool passed but cannot be kept
                    log.error("could not store tool %s: %s", tool.name, exc)
                    record["error"] = outcome.error = f"the tool passed its tests but could not be stored: {exc}"
                    return outcome
                outcome.ok, outcome.tool, outcome.error = True, tool, ""
                log.info("tool %s v%d created (%d test(s) passed, %s)", tool.name, tool.version,
                         len(tool.test_names), validation["backend"])
                self._bus.publish("tool_created", tool=tool.as_map())
                return outcome
        log.info("forge gave up on %r: %s", spec[:80], outcome.error)
        return outcome


def _cancelled(outcome: ForgeOutcome) -> ForgeOutcome:
    outcome.ok, outcome.cancelled, outcome.error = False, True, CANCELLED
    log.info("forge of %r cancelled", outcome.spec[:80])
    return outcome


class ToolRunner:
    """Runs registered tools and re-validates them; tool code only ever runs in the sandbox."""

    def __init__(self, executor: SecureCodeExecutor, registry: ToolRegistry):
        self._executor, self.registry = executor, registry

    @property
    def executor(self) -> SecureCodeExecutor:
        return self._executor

    def usable_tools(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "signature": t.signature, "docstring": t.docstring} for t in self.registry.usable()]

    def call(self, name: str, arguments: Any, *, cancel: threading.Event | None = None) -> ToolCallOutcome:
        """Run a registered, passing tool once in the sandbox. Every failure, the sandbox's included,
        is a failed outcome (for BRICK to read), never an exception. Once `cancel` is set the run is
        killed and the outcome is `cancelled`, which is no failure and not for BRICK to read."""
        if cancel is not None and cancel.is_set():
            return ToolCallOutcome(False, name, arguments if isinstance(arguments, dict) else {}, error=CANCELLED,
                                   cancelled=True)
        if not isinstance(arguments, dict):
            return ToolCallOutcome(False, name, {}, error="arguments must be a JSON object")
        tool = self.registry.get(name)
        if tool is None or tool.status != OK:
            return ToolCallOutcome(False, name, arguments, error=f"no usable tool named {name!r}")
        call = call_in_sandbox(self._executor, name, tool.source, what="tool", arguments=arguments, cancel=cancel)
        if call.cancelled:
            log.info("call of tool %s cancelled after %.0f ms", name, call.execution["wall_ms"])
            return ToolCallOutcome(False, name, arguments, error=CANCELLED, execution=call.execution, cancelled=True)
        return ToolCallOutcome(not call.error, name, arguments, value=call.value, error=call.error,
                               output=call.output, execution=call.execution or {})

    def _revalidate(self, tool: Tool) -> tuple[bool, dict[str, Any]]:
        try:
            checked = check_tool(tool.name, tool.source, tool.tests)
            report = run_in_sandbox(self._executor, tool.name, tool.source, tests=tool.tests,
                                    test_names=checked.test_names)
        except ToolCheckError as exc:
            return False, {"error": str(exc), "at": time.time()}
        except SandboxUnavailable as exc:
            return False, {"error": f"sandbox unavailable: {exc}", "at": time.time()}
        except SANDBOX_ERRORS as exc:
            return False, {"error": f"the sandbox failed: {_sandbox_error(exc)}", "at": time.time()}
        validation = _validation_record(report)
        if not report.passed:
            validation["error"] = failure_feedback(report)
        return report.passed, validation

    def revalidate_all(self) -> dict[str, str]:
        """Re-run every tool's tests in the sandbox (after a restart); failing tools become broken.

        Every tool ends with a verdict, whatever happens to the others: none stays 'validating'.
        """
        statuses = {}
        for tool in self.registry.all():
            if tool.status == BROKEN and "hash mismatch" in str(tool.validation.get("error", "")):
                statuses[tool.name] = BROKEN
                continue
            try:
                passed, validation = self._revalidate(tool)
            except Exception as exc:  # a defect, not a verdict: still give the tool one, loudly
                log.exception("re-validation of tool %s crashed", tool.name)
                passed, validation = False, {"error": f"re-validation crashed: {type(exc).__name__}: {exc}",
                                             "at": time.time()}
            status = OK if passed else BROKEN
            try:
                self.registry.set_status(tool.name, status, validation)
            except OSError as exc:  # the verdict holds in memory even if the manifest cannot be written
                log.error("could not record the status of tool %s: %s", tool.name, exc)
            statuses[tool.name] = status
            if not passed:
                log.warning("tool %s failed re-validation; marked broken: %s", tool.name, validation.get("error"))
        return statuses
