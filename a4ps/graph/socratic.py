"""The LangGraph StateGraph of one task: alfred_plan -> brick -> robin -> router -> ... -> alfred_synthesize."""

from __future__ import annotations

import logging
import operator
import threading
from typing import Annotated, Any, Callable, Protocol, TypedDict

from langgraph.graph import END, START, StateGraph

from a4ps.config.schema import Codex, Graph
from a4ps.config.templates import render
from a4ps.events import EventBus
from a4ps.graph import schemas
from a4ps.graph.voice import TaskCancelled, Voices

log = logging.getLogger(__name__)

__all__ = ["DialogueState", "SocraticGraph", "TaskCancelled", "Workshop"]

MAX_UTTERANCE_CHARS = 700
MIN_SPEC_WORDS = 3  # a tool request must describe a function, not just say "true"
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
    tool_call: dict | None
    tool_results: Annotated[list[dict], operator.add]
    forges: int
    tool_calls: int
    answer: str


class Workshop(Protocol):
    """What the graph needs from the ToolForge: the usable tools, forging one, calling one."""

    def usable_tools(self) -> list[dict]: ...

    def forge(self, spec: str, *, on_token: Callable[[str], None] | None = None,
              cancel: threading.Event | None = None) -> Any: ...

    def call(self, name: str, arguments: Any) -> Any: ...


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


def _tools_text(tools: list[dict]) -> str:
    if not tools:
        return "(none yet)"
    return "; ".join(f"{t['signature']}: {t['docstring'][:120]}" for t in tools)


def _tool_results_text(results: list[dict]) -> str:
    if not results:
        return ""
    return "\nTool results:\n" + "\n".join(f"- {r['summary']}" for r in results[-3:]) + "\n"


class SocraticGraph:
    """Builds and runs the compiled graph for one task at a time."""

    def __init__(self, voices: Voices, codex: Codex, config: Graph, bus: EventBus,
                 workshop: Workshop | None = None, recall: Callable[[str], str] | None = None):
        self._voices = voices
        self._prompts = codex.prompts
        self._config = config
        self._bus = bus
        self._workshop = workshop
        self._recall = recall
        self._cancel = threading.Event()
        self._compiled = self._build()

    def _fill(self, template: str, state: DialogueState) -> str:
        return render(
            template,
            task=state.get("task", ""),
            plan=state.get("plan", ""),
            memories=state.get("memories") or "(none)",
            dialogue=_dialogue_text(state.get("dialogue", [])),
            tool_results=_tool_results_text(state.get("tool_results", [])),
            turn=state.get("turn", 0) + 1,
            tools=_tools_text(self._workshop.usable_tools() if self._workshop else []),
        )

    def _say(self, persona: str, node: str, template: str, schema: dict, state: DialogueState, turn: int) -> dict:
        return self._voices.speak(persona, self._fill(template, {**state, "turn": turn - 1}), schema,
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
        tools = [t["name"] for t in self._workshop.usable_tools()] if self._workshop else []
        data = self._say("BRICK", "brick", self._prompts.thesis, schemas.thesis_schema(tools), state, turn)
        request = call = None
        if data["needs_tool"] and len(data["tool_spec"].split()) >= MIN_SPEC_WORDS:
            request = {"spec": data["tool_spec"].strip(), "turn": turn}
            self._bus.publish("tool_request", task_id=state["task_id"], turn=turn, name="", spec=request["spec"])
        if data.get("call_tool"):
            call = {"name": data["call_tool"], "arguments": data.get("arguments", {}), "turn": turn}
        return {"turn": turn, "tool_request": request, "tool_call": call,
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
        """Forge the requested tool (BRICK writes it, the sandbox tests it); the outcome joins the dialogue."""
        request, turn, task_id = state["tool_request"] or {}, state["turn"], state["task_id"]

        def on_token(text: str) -> None:
            if self._cancel.is_set():
                raise TaskCancelled()
            self._bus.publish("token", task_id=task_id, persona="BRICK", node="tool_forge", turn=turn, text=text)

        outcome = self._workshop.forge(request.get("spec", ""), on_token=on_token, cancel=self._cancel)
        if self._cancel.is_set():
            raise TaskCancelled()
        return {"tool_request": None, "forges": state.get("forges", 0) + 1,
                **self._tool_round("tool_forge", "forge", outcome, state)}

    def tool_call(self, state: DialogueState) -> dict:
        """Run one registered tool in the sandbox; its result joins the dialogue."""
        call = state["tool_call"] or {}
        outcome = self._workshop.call(call.get("name", ""), call.get("arguments", {}))
        return {"tool_call": None, "tool_calls": state.get("tool_calls", 0) + 1,
                **self._tool_round("tool_call", "call", outcome, state)}

    def _tool_round(self, node: str, kind: str, outcome: Any, state: DialogueState) -> dict:
        """A tool outcome becomes BRICK's utterance, a tool result and a line of the dialogue."""
        turn, task_id = state["turn"], state["task_id"]
        self._bus.publish("utterance", task_id=task_id, persona="BRICK", node=node, turn=turn,
                          text=outcome.summary, data={"ok": outcome.ok})
        return {"tool_results": [{"kind": kind, "ok": outcome.ok, "summary": outcome.summary}],
                "dialogue": [{"persona": "BRICK", "node": node, "turn": turn, "text": outcome.summary}]}

    def alfred_synthesize(self, state: DialogueState) -> dict:
        data = self._say("ALFRED", "alfred_synthesize", self._prompts.synthesis, schemas.SYNTHESIS, state,
                         state.get("turn", 0))
        return {"answer": data["answer"]}

    def route(self, state: DialogueState) -> str:
        """Where to go after ROBIN: forge a requested tool, argue again, or synthesize."""
        turn, values = state["turn"], state.get("dissonance", [])
        threshold, max_turns = self._config.convergence_threshold, self._config.max_turns
        request, call = state.get("tool_request"), state.get("tool_call")
        if request:
            if self._workshop is not None and state.get("forges", 0) < max_turns:
                return "tool_forge"
            if self._workshop is None:
                log.info("BRICK asked for a tool (%s) but no tool forge is installed; continuing without it",
                         request["spec"][:120])
        if call and self._workshop is not None and state.get("tool_calls", 0) < max_turns:
            return "tool_call"
        if values and values[-1] > threshold and turn < max_turns:
            return "brick"
        if turn >= max_turns and values and all(v > threshold for v in values):
            self._bus.publish("high_cognitive_dissonance", task_id=state["task_id"], values=list(values),
                              threshold=threshold)
        return "alfred_synthesize"

    def after_tool(self, state: DialogueState) -> str:
        """After a tool round BRICK continues, unless the turns are used up."""
        if state.get("tool_call") and self._workshop is not None and state.get("tool_calls", 0) < self._config.max_turns:
            return "tool_call"
        return "brick" if state["turn"] < self._config.max_turns else "alfred_synthesize"

    def _build(self) -> Any:
        graph = StateGraph(DialogueState)
        graph.add_node("alfred_plan", self.alfred_plan)
        graph.add_node("brick", self.brick)
        graph.add_node("robin", self.robin)
        graph.add_node("tool_forge", self.tool_forge)
        graph.add_node("tool_call", self.tool_call)
        graph.add_node("alfred_synthesize", self.alfred_synthesize)
        graph.add_edge(START, "alfred_plan")
        graph.add_edge("alfred_plan", "brick")
        graph.add_edge("brick", "robin")
        graph.add_conditional_edges("robin", self.route, ["brick", "tool_forge", "tool_call", "alfred_synthesize"])
        graph.add_conditional_edges("tool_forge", self.after_tool, ["brick", "tool_call", "alfred_synthesize"])
        graph.add_conditional_edges("tool_call", self.after_tool, ["brick", "alfred_synthesize"])
        graph.add_edge("alfred_synthesize", END)
        return graph.compile()

    # --- running -------------------------------------------------------------------------------
    def run(self, task_id: str, task: str, memories: str = "",
            cancel: threading.Event | None = None) -> DialogueState:
        """Run one task to its synthesis; raises TaskCancelled once `cancel` is set (even if set before)."""
        self._cancel = cancel or threading.Event()
        initial: DialogueState = {"task_id": task_id, "task": task, "memories": memories, "turn": 0,
                                  "dialogue": [], "dissonance": [], "tool_results": [], "forges": 0,
                                  "tool_calls": 0, "tool_request": None, "tool_call": None}
        limit = 6 * self._config.max_turns + 10
        return self._compiled.invoke(initial, config={"recursion_limit": limit})
