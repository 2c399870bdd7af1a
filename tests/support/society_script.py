"""Scripted answers for the Ollama stand-in: the graph's steps answer fixed text, and the decisions of
the autonomy and the cadence (goal, proposal, judgement, tool arguments) come from queues a test fills,
so a test can force an outcome (a repeated goal, a proposal against `consent`) over the real protocol."""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque

MODELS = ["llama3.2:3b", "phi3:mini", "gemma2:2b", "nomic-embed-text"]
ANSWER = "Take a raincoat."


class SocietyScript:
    """A responder `(model, messages, format) -> content`; `asked[kind]` counts the decisions asked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.queues: dict[str, deque] = defaultdict(deque)
        self.asked: dict[str, int] = defaultdict(int)
        self.systems: list[str] = []  # every system message a prose answer was asked under

    def push(self, kind: str, *answers: dict) -> None:
        with self._lock:
            self.queues[kind].extend(answers)

    def _decision(self, kind: str, default: dict) -> str:
        with self._lock:
            self.asked[kind] += 1
            queue = self.queues[kind]
            answer = queue.popleft() if len(queue) > 1 else (queue[0] if queue else default)
        return json.dumps(answer)

    def __call__(self, model: str, messages: list[dict], fmt) -> str:
        if isinstance(fmt, dict):
            props = fmt.get("properties", {})
            if "goal" in props:
                return self._decision("goal", {"kind": "task", "goal": "Explain why the sky is blue.",
                                               "why": "Curiosity.", "builds_on": "nothing yet"})
            if "target" in props:
                return self._decision("proposal", {})
            if "better" in props:
                return self._decision("judge", {"better": "tie"})
            if "arguments" in props and "needs_tool" not in props:
                return self._decision("arguments", {"arguments": {}})
            if "form" in props:
                return json.dumps({"form": "prose", "items": 0, "list_marker": "1."})
            if "verdict" in props:
                return json.dumps({"verdict": "aligned"})
            return json.dumps({"needs_tool": False, "tool_spec": ""})
        with self._lock:
            self.systems.append(next((m["content"] for m in messages if m["role"] == "system"), ""))
        return ANSWER
