"""The LangGraph StateGraph of one task: alfred_plan -> brick -> robin -> router -> ... -> alfred_synthesize."""

from __future__ import annotations

import logging
import operator
import threading
from typing import Annotated, Any, Callable, Protocol, TypedDict

from langgraph.graph import END, START, StateGraph

from a4ps.config.schema import Codex, Graph
from a4ps.events import EventBus
from a4ps.graph import schemas
from a4ps.graph.voice import TaskCancelled, Voices

log = logging.getLogger(__name__)

__all__ = ["DialogueState", "SocraticGraph", "TaskCancelled", "ToolForgeNode"]

MAX_UTTERANCE_CHARS = 700
DIALOGUE_WINDOW = 6


class DialogueState(TypedDict, total=False):
    task_id: str
    task: str
    memories: str
    plan: str
    dialogue: Annotated[list[dict], operator.add]
    turn: int
    dissonance: Annotated[list[float], operator.add]
    tool_request: dict | None
    tool_results: Annotated[list[dict], operator.add]
    forges: int
    answer: str


class ToolForgeNode(Protocol):
    """What the graph needs from the tool forge: make (or reuse) a tool for a request."""

    def __call__(self, request: dict, *, task_id: str, turn: int) -> dict: ...


def _dialogue_text(dialogue: list[dict]) -> str:
    if not dialogue:
        return "(nothing yet)"
    lines = []
    for item in dialogue[-DIALOGUE_WINDOW:]:
        text = item["text"].strip()
        if len(text) > MAX_UTTERANCE_CHARS:
            text = text[:MAX_UTTERANCE_CHARS] + "…"
        lines.append(f"{item['persona']} (turn {item['turn']}): {text}")
    return "\n".join(lines)


def _tool_results_text(results: list[dict]) -> str:
    if not results:
        return ""
    return "\nTool results:\n" + "\n".join(f"- {r['summary']}" for r in results[-3:]) + "\n"


class _Fill(dict):
    """Template values; an unknown {name} in a codex prompt stays as written instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class SocraticGraph:
    """Builds and runs the compiled graph for one task at a time."""

    def __init__(self, voices: Voices, codex: Codex, config: Graph, bus: EventBus,
                 forge: ToolForgeNode | None = None, recall: Callable[[str], str] | None = None):
        self._voices = voices
        self._prompts = codex.prompts
        self._config = config
        self._bus = bus
        self._forge = forge
        self._recall = recall
        self._cancel = threading.Event()
        self._compiled = self._build()

    def set_codex(self, codex: Codex) -> None:
        """Prompts are read per call, so a new codex applies from the next node on."""
        self._prompts = codex.prompts

    def set_forge(self, forge: ToolForgeNode | None) -> None:
        self._forge = forge

    def set_recall(self, recall: Callable[[str], str] | None) -> None:
        self._recall = recall

    def _fill(self, template: str, state: DialogueState) -> str:
        return template.format_map(_Fill(
            task=state.get("task", ""),
            plan=state.get("plan", ""),
            memories=state.get("memories") or "(none)",
            dialogue=_dialogue_text(state.get("dialogue", [])),
            tool_results=_tool_results_text(state.get("tool_results", [])),
            turn=state.get("turn", 0) + 1,
        ))

    def _say(self, persona: str, node: str, template: str, schema: dict, state: DialogueState, turn: int) -> dict:
        return self._voices.speak(persona, self._fill(template, state), schema,
                                  shown_field=schemas.SHOWN_FIELD[node], task_id=state["task_id"],
                                  node=node, turn=turn, cancel=self._cancel)

    # --- nodes -------------------------------------------------------------------------------
    def alfred_plan(self, state: DialogueState) -> dict:
        memories = state.get("memories", "")
        if self._recall is not None:
            try:
                memories = self._recall(state["task"])
            except Exception:  # memory is an aid; a failing store must not fail the task
                log.exception("memory recall failed; planning without memories")
        data = self._say("ALFRED", "alfred_plan", self._prompts.plan, schemas.PLAN, {**state, "memories": memories}, 0)
        return {"plan": data["plan"], "memories": memories,
                "dialogue": [{"persona": "ALFRED", "node": "alfred_plan", "turn": 0, "text": data["plan"]}]}

    def brick(self, state: DialogueState) -> dict:
        turn = state.get("turn", 0) + 1
        data = self._say("BRICK", "brick", self._prompts.thesis, schemas.THESIS, state, turn)
        request = None
        if data["needs_tool"] and data["tool_spec"].strip():
            request = {"spec": data["tool_spec"].strip(), "turn": turn}
            self._bus.publish("tool_request", task_id=state["task_id"], turn=turn, name="", spec=request["spec"])
        return {"turn": turn, "tool_request": request,
                "dialogue": [{"persona": "BRICK", "node": "brick", "turn": turn, "text": data["analysis"]}]}

    def robin(self, state: DialogueState) -> dict:
        turn = state["turn"]
        data = self._say("ROBIN", "robin", self._prompts.antithesis, schemas.ANTITHESIS, state, turn)
        value = float(data["dissonance"])
        self._voices.record_dissonance("ROBIN", value)
        self._bus.publish("dissonance", task_id=state["task_id"], turn=turn, value=value)
        return {"dissonance": [value],
                "dialogue": [{"persona": "ROBIN", "node": "robin", "turn": turn, "text": data["response"]}]}

    def tool_forge(self, state: DialogueState) -> dict:
        request = state["tool_request"] or {}
        outcome = self._forge(request, task_id=state["task_id"], turn=state["turn"])
        return {"tool_request": None, "forges": state.get("forges", 0) + 1, "tool_results": [outcome]}

    def alfred_synthesize(self, state: DialogueState) -> dict:
        data = self._say("ALFRED", "alfred_synthesize", self._prompts.synthesis, schemas.SYNTHESIS, state,
                         state.get("turn", 0))
        return {"answer": data["answer"]}

    def route(self, state: DialogueState) -> str:
        """Where to go after ROBIN: forge a requested tool, argue again, or synthesize."""
        turn, values = state["turn"], state.get("dissonance", [])
        threshold, max_turns = self._config.convergence_threshold, self._config.max_turns
        request = state.get("tool_request")
        if request:
            if self._forge is not None and state.get("forges", 0) < max_turns and turn < max_turns:
                return "tool_forge"
            if self._forge is None:
                log.info("BRICK asked for a tool (%s) but no tool forge is installed; continuing without it",
                         request["spec"][:120])
        if values and values[-1] > threshold and turn < max_turns:
            return "brick"
        if turn >= max_turns and values and all(v > threshold for v in values):
            self._bus.publish("high_cognitive_dissonance", task_id=state["task_id"], values=list(values),
                              threshold=threshold)
        return "alfred_synthesize"

    def _build(self) -> Any:
        graph = StateGraph(DialogueState)
        graph.add_node("alfred_plan", self.alfred_plan)
        graph.add_node("brick", self.brick)
        graph.add_node("robin", self.robin)
        graph.add_node("tool_forge", self.tool_forge)
        graph.add_node("alfred_synthesize", self.alfred_synthesize)
        graph.add_edge(START, "alfred_plan")
        graph.add_edge("alfred_plan", "brick")
        graph.add_edge("brick", "robin")
        graph.add_conditional_edges("robin", self.route, ["brick", "tool_forge", "alfred_synthesize"])
        graph.add_edge("tool_forge", "brick")
        graph.add_edge("alfred_synthesize", END)
        return graph.compile()

    # --- running -------------------------------------------------------------------------------
    def run(self, task_id: str, task: str, memories: str = "",
            cancel: threading.Event | None = None) -> DialogueState:
        """Run one task to its synthesis; raises TaskCancelled once `cancel` is set (even if set before)."""
        self._cancel = cancel or threading.Event()
        initial: DialogueState = {"task_id": task_id, "task": task, "memories": memories, "turn": 0,
                                  "dialogue": [], "dissonance": [], "tool_results": [], "forges": 0,
                                  "tool_request": None}
        limit = 6 * self._config.max_turns + 10
        return self._compiled.invoke(initial, config={"recursion_limit": limit})
