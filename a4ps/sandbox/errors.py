"""Errors of the sandbox: callers must be able to tell 'no sandbox here' from 'the sandbox broke'."""

from __future__ import annotations


class SandboxUnavailable(RuntimeError):
    """No isolating backend can run here; model-written code must then not run at all."""


class SandboxFailure(RuntimeError):
    """The chosen backend was available but failed to start or clean up a run (not the guest's fault)."""
