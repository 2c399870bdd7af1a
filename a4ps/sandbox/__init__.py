"""Secure sandbox for model-written code (organ 5): the only place such code ever runs."""

from a4ps.sandbox.errors import SandboxFailure, SandboxUnavailable
from a4ps.sandbox.execution_result import ExecutionResult, KillReason
from a4ps.sandbox.executor import BACKEND_ORDER, SecureCodeExecutor

__all__ = [
    "BACKEND_ORDER",
    "ExecutionResult",
    "KillReason",
    "SandboxFailure",
    "SandboxUnavailable",
    "SecureCodeExecutor",
]
