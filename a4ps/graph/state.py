"""What one task's graph carries from node to node, what it needs from the forge, and the window of
the shared conversation each call sees."""

from __future__ import annotations

import operator
import threading
from typing import Annotated, Any, Callable, Protocol, TypedDict

from langchain_core.runnables import RunnableConfig


class DialogueState(TypedDict, total=False):
    task_id: str
    task: str
    memories: str
    plan: str
    form: dict  # ALFRED's reading of the answer's form (schemas.FORM)
    transcript: Annotated[list[dict], operator.add]  # the shared conversation (chat messages)
    dialogue: Annotated[list[dict], operator.add]    # who said what, for people and memory
    turn: int
    results: Annotated[list[dict], operator.add]  # number tasks: each round's {"turn", "brick", "robin"[, "alfred"]}
    brick_result: float | None  # number tasks: the number BRICK's latest answer reached
    computed: bool  # number tasks: brick_result came from his program, run in the sandbox
    held: list[dict]  # number tasks: BRICK's first exchange, kept out of the conversation until he revises
    check: list[dict]  # the working a settled number came from (ALFRED's blind exchange, or BRICK's program)
    dissonance: Annotated[list[float], operator.add]
    tool_request: dict | None
    tool_call: dict | None
    tool_results: Annotated[list[dict], operator.add]
    forges: int
    tool_calls: int
    answer: str


class Workshop(Protocol):
    """What the graph needs from the ToolForge: the usable tools, forging one, calling one, running a
    program, checking a final answer's code."""

    def usable_tools(self) -> list[dict]: ...

    def forge(self, spec: str, *, on_token: Callable[[str], None] | None = None,
              cancel: threading.Event | None = None) -> Any: ...

    def call(self, name: str, arguments: Any, *, cancel: threading.Event | None = None) -> Any: ...

    def compute(self, lines: list[str], *, cancel: threading.Event | None = None) -> Any: ...

    def check_code(self, lines: list[str], checks: list[str], *, cancel: threading.Event | None = None) -> Any: ...


def cancel_of(config: RunnableConfig | None) -> threading.Event:
    """The run's cancel event (in the config, so nodes keep no per-run state of their own)."""
    cancel = ((config or {}).get("configurable") or {}).get("cancel")
    return cancel if cancel is not None else threading.Event()


def tools_text(tools: list[dict]) -> str:
    if not tools:
        return "(none yet)"
    return "; ".join(f"{t['signature']}: {t['docstring'][:120]}" for t in tools)


def tool_results_text(results: list[dict]) -> str:
    if not results:
        return ""
    return "\n\nTool results:\n" + "\n".join(f"- {r['summary']}" for r in results[-3:])


def window(transcript: list[dict], max_chars: int) -> list[dict]:
    """The transcript within a character budget: the opening exchange (task and plan) is always kept,
    then the most recent messages; what falls out of the middle is marked."""
    if sum(len(m["content"]) for m in transcript) <= max_chars or len(transcript) <= 4:
        return transcript
    head, tail, used = transcript[:2], [], sum(len(m["content"]) for m in transcript[:2])
    for message in reversed(transcript[2:]):
        if used + len(message["content"]) > max_chars and len(tail) >= 2:
            break
        tail.insert(0, message)
        used += len(message["content"])
    if tail and tail[0]["role"] == "assistant":  # keep user/assistant alternation
        tail = tail[1:]
    return head + [{"role": "user", "content": "(earlier turns omitted)"},
                   {"role": "assistant", "content": "Understood."}] + tail
