"""ToolForge: ask BRICK for a tool (schema-constrained), check its AST, run its tests in the sandbox,
feed failures back, and register what passes. Tool calls also run only in the sandbox."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from a4ps.config.schema import Codex
from a4ps.config.templates import render
from a4ps.events import EventBus
from a4ps.forge import schemas
from a4ps.forge.checks import ToolCheckError, check_tool
from a4ps.forge.harness import HarnessReport, run_in_sandbox
from a4ps.forge.registry import BROKEN, OK, Tool, ToolRegistry
from a4ps.models import ModelError, ModelManager
from a4ps.models.types import Sampling
from a4ps.protos import ProtoManager
from a4ps.sandbox import SandboxUnavailable, SecureCodeExecutor

log = logging.getLogger(__name__)

FORGING_PERSONA = "BRICK"


@dataclass
class ForgeOutcome:
    """The result of one forge request, as the dialogue and the CLI show it."""

    ok: bool
    spec: str
    tool: Tool | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def summary(self) -> str:
        if self.ok and self.tool:
            return (f"tool {self.tool.signature} created after {len(self.attempts)} attempt(s); "
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

    @property
    def summary(self) -> str:
        if self.ok:
            return f"{self.name}({self.arguments}) returned {str(self.value)[:300]}"
        return f"{self.name}({self.arguments}) failed: {self.error}"


def _validation_record(report: HarnessReport) -> dict[str, Any]:
    data = report.data or {}
    return {"backend": report.execution.backend, "passed": data.get("passed", []),
            "failed": data.get("failed", []), "error": data.get("error") or report.problem,
            "wall_ms": round(report.execution.wall_ms, 1), "at": time.time()}


class ToolForge:
    """Creates tools from specs and runs registered tools; everything model-written runs sandboxed."""

    def __init__(self, models: ModelManager, protos: ProtoManager, codex: Codex, runner: "ToolRunner",
                 bus: EventBus, max_retries: int, max_tokens: int = 900):
        self._models, self._protos, self._codex = models, protos, codex
        self.runner, self.registry, self._executor, self._bus = runner, runner.registry, runner.executor, bus
        self._max_retries, self._max_tokens = max_retries, max_tokens
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"{self._models.provider.describe()} writing, {self._executor.backend_name} sandbox testing"

    def usable_tools(self) -> list[dict[str, Any]]:
        return self.runner.usable_tools()

    def call(self, name: str, arguments: Any) -> "ToolCallOutcome":
        return self.runner.call(name, arguments)

    def revalidate_all(self) -> dict[str, str]:
        return self.runner.revalidate_all()

    # --- forging ---------------------------------------------------------------------------------
    def _ask(self, spec: str, feedback: str, on_token: Callable[[str], None] | None) -> tuple[dict, str]:
        proto = self._protos.get(FORGING_PERSONA)
        prompt = render(self._codex.prompts.forge, spec=spec, feedback=feedback)
        result = self._models.chat(
            [{"role": "system", "content": proto.system_prompt}, {"role": "user", "content": prompt}],
            model=proto.model, schema=schemas.TOOL, on_token=on_token, stream_field="code",
            sampling=Sampling(min(proto.temperature, 0.4), proto.top_p, self._max_tokens))
        self._protos.record_call(FORGING_PERSONA, result.completion_tokens)
        return result.data or {}, proto.model

    def forge(self, spec: str, *, on_token: Callable[[str], None] | None = None,
              cancel: threading.Event | None = None) -> ForgeOutcome:
        """Up to max_retries attempts; each failure (schema, AST, tests) is fed back into the next."""
        outcome = ForgeOutcome(ok=False, spec=spec)
        feedback = ""
        with self._lock:
            for attempt in range(1, self._max_retries + 1):
                if cancel is not None and cancel.is_set():
                    outcome.error = "cancelled"
                    return outcome
                record: dict[str, Any] = {"attempt": attempt}
                outcome.attempts.append(record)
                try:
                    answer, model = self._ask(spec, feedback, on_token)
                except ModelError as exc:
                    record["error"] = outcome.error = f"no valid tool answer: {exc}"
                    feedback = ""
                    continue
                record["name"] = answer["name"]
                try:
                    checked = check_tool(answer["name"], answer["code"], answer["tests"])
                except ToolCheckError as exc:
                    record["error"] = outcome.error = str(exc)
                    feedback = f"\nYour previous attempt was rejected: {exc}. Fix it."
                    continue
                try:
                    report = run_in_sandbox(self._executor, checked.name, answer["code"], tests=answer["tests"],
                                            test_names=checked.test_names)
                except SandboxUnavailable as exc:
                    record["error"] = outcome.error = f"sandbox unavailable: {exc}"
                    return outcome  # without a sandbox no tool can ever be validated
                validation = _validation_record(report)
                record["validation"] = validation
                if report.data is None or report.data.get("error") or report.data.get("failed"):
                    failures = "; ".join(f"{f['test']}: {f['error']}" for f in (report.data or {}).get("failed", []))
                    outcome.error = validation["error"] or failures
                    record["error"] = outcome.error
                    feedback = f"\nYour previous attempt failed its tests in the sandbox: {outcome.error[:600]}. Fix it."
                    continue
                tool = Tool(name=checked.name, docstring=checked.docstring, signature=checked.signature, spec=spec,
                            source=answer["code"], tests=answer["tests"], test_names=list(checked.test_names),
                            model=model, status=OK, validation=validation)
                self.registry.save(tool)
                outcome.ok, outcome.tool, outcome.error = True, tool, ""
                log.info("tool %s created (%d test(s) passed, %s)", tool.name, len(tool.test_names), validation["backend"])
                self._bus.publish("tool_created", tool=tool.as_map())
                return outcome
        log.info("forge gave up on %r: %s", spec[:80], outcome.error)
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

    def call(self, name: str, arguments: Any) -> ToolCallOutcome:
        """Run a registered, passing tool once in the sandbox."""
        if not isinstance(arguments, dict):
            return ToolCallOutcome(False, name, {}, error="arguments must be a JSON object")
        tool = self.registry.get(name)
        if tool is None or tool.status != OK:
            return ToolCallOutcome(False, name, arguments, error=f"no usable tool named {name!r}")
        try:
            report = run_in_sandbox(self._executor, name, tool.source, arguments=arguments)
        except SandboxUnavailable as exc:
            return ToolCallOutcome(False, name, arguments, error=f"sandbox unavailable: {exc}")
        data = report.data or {}
        error = data.get("error") or report.problem
        return ToolCallOutcome(not error, name, arguments, value=data.get("value"), error=error,
                               output=data.get("output", ""), execution=report.execution.to_dict())

    def revalidate_all(self) -> dict[str, str]:
        """Re-run every tool's tests in the sandbox (after a restart); failing tools become broken."""
        statuses = {}
        for tool in self.registry.all():
            if tool.status == BROKEN and "hash mismatch" in str(tool.validation.get("error", "")):
                statuses[tool.name] = BROKEN
                continue
            try:
                checked = check_tool(tool.name, tool.source, tool.tests)
                report = run_in_sandbox(self._executor, tool.name, tool.source, tests=tool.tests,
                                        test_names=checked.test_names)
                validation = _validation_record(report)
                passed = report.data is not None and not report.data.get("error") and not report.data.get("failed")
            except ToolCheckError as exc:
                validation, passed = {"error": str(exc), "at": time.time()}, False
            except SandboxUnavailable as exc:
                validation, passed = {"error": f"sandbox unavailable: {exc}", "at": time.time()}, False
            status = OK if passed else BROKEN
            self.registry.set_status(tool.name, status, validation)
            statuses[tool.name] = status
            if not passed:
                log.warning("tool %s failed re-validation; marked broken: %s", tool.name, validation.get("error"))
        return statuses
