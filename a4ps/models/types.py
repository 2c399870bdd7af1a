"""Value types and errors shared by the model providers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

TokenCallback = Callable[[str], None]


class ModelError(RuntimeError):
    """A provider failed to answer (server down, model missing, load failure)."""


class ModelCancelled(ModelError):
    """The call was aborted because its caller asked to stop (Sampling.should_stop)."""


class StructuredOutputError(ModelError):
    """The model's answer did not validate against the requested JSON schema, after all retries."""


# Code wants at most a light repeat penalty: indentation, quotes and names repeat by nature (a JSON line
# of code under the prose penalty of 1.15 was measured to break off mid-string: "return Tr"); the
# schema's bounds are what stop a loop.
CODE_REPEAT_PENALTY = 1.05


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 256
    repeat_penalty: float = 1.15
    # A GBNF grammar the prose must follow (e.g. exactly three numbered items): it shapes text that is
    # shown, never parsed. The embedded provider enforces it; providers without grammars ignore it.
    layout: str | None = None
    # Asked while the model reads the prompt (no token callback runs then); True aborts the call with
    # ModelCancelled, so a Stop takes effect within a fraction of a second even during a long prefill.
    should_stop: Callable[[], bool] | None = None


@dataclass
class ChatResult:
    """One model answer: raw text, the validated object (when a schema was given), and timings."""

    text: str
    data: dict[str, Any] | None = None
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False  # the answer was cut off by max_tokens, mid-way
