"""The LangGraph StateGraph of one task: alfred_plan -> brick -> robin -> router -> ... -> alfred_synthesize
(and alfred_check, when BRICK and ROBIN reach different numbers; brick_compute, when all three differ).

The personas share one conversation (a4ps.graph.conversation): a system message that introduces the
society (from the codex), then every instruction and every answer in the order they happened
(`transcript`). Each call only appends to it, so a local model re-reads nothing it has already
processed, and every persona sees the whole discussion.

One exception makes the debate worth having: in the first round ROBIN answers blind. BRICK's first
answer stays out of the conversation until she has given her own, then is shown to her to compare with. Two
answers reached independently disagree where one of them slipped; a reply written after reading the
other mostly agrees with it (a small model anchors on what it reads), and then the debate adds nothing.
For the same reason a disputed number is not argued over in the shared conversation: ALFRED works it
out on his own as a third voice, and two of three independent results decide it. When all three
differ, hand working has failed twice over: BRICK computes the number with a program instead. When the task asks
for one number, each voice states the number its own answer reached (a short constrained follow-up
on its own cached answer), so ROBIN is never made to re-read BRICK's working just to quote his number;
his first answer joins the conversation only if he is asked to revise it.

When ALFRED reads the task as one number that takes going through many cases (every number in a
range), BRICK does not work it out by hand: he writes a program, the sandbox runs it, and its number
is the result (a4ps.graph.computing). ROBIN still answers on her own, but a hand-worked number does
not outvote a computed one (a small model's errors on a hundred cases are alike, so two of them
agreeing proves nothing).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from a4ps.config.schema import Codex, Graph
from a4ps.config.templates import render, shown
from a4ps.events import EventBus
from a4ps.graph import dissonance, results as numbers, schemas
from a4ps.graph.coding import code_answer
from a4ps.graph.computing import compute_number
from a4ps.graph.conversation import Conversation
from a4ps.graph.routing import Router
from a4ps.graph.state import DialogueState, Workshop, cancel_of, tools_text, window
from a4ps.graph.voice import TaskCancelled, Voices
from a4ps.models.structured import list_layout

log = logging.getLogger(__name__)

__all__ = ["DialogueState", "SocraticGraph", "TaskCancelled", "Workshop"]

MIN_SPEC_WORDS = 3  # a tool request must describe a function, not just say "true"


class SocraticGraph:
    """Builds and runs the compiled graph for one task at a time."""

    def __init__(self, voices: Voices, codex: Codex, config: Graph, bus: EventBus,
                 workshop: Workshop | None = None, recall: Callable[[str], str] | None = None,
                 checkpointer: BaseCheckpointSaver | None = None):
        self._voices = voices
        self._prompts = codex.prompts
        self._config = config
        self._bus = bus
        self._workshop = workshop
        self._recall = recall
        self._checkpointer = checkpointer
        self._talk = Conversation(voices, codex, config)
        self._router = Router(config, bus, has_workshop=workshop is not None)
        self._compiled = self._build()

    # --- helpers -----------------------------------------------------------------------------
    def _program(self, state: DialogueState, cancel: threading.Event, node: str = "brick", turn: int = 1,
                 template: str | None = None) -> tuple[list[dict], str, float] | None:
        """BRICK's program for the task's number (a4ps.graph.computing), or None: he works it out by hand."""
        return compute_number(self._talk, self._workshop, state, cancel, node=node, turn=turn,
                              instruction=self._talk.fill(template or self._prompts.compute, state),
                              fix_template=self._prompts.program_fix, fixes=self._config.program_fixes)

    def _computed_update(self, state: DialogueState, node: str, turn: int, seen: list[dict], text: str,
                         number: float) -> dict:
        """BRICK's program and its number are shown, and become the working ALFRED writes the answer on from."""
        self._voices.utterance("BRICK", task_id=state["task_id"], node=node, turn=turn, text=text,
                               data={"result": number, "computed": True})
        return {"brick_result": number, "computed": True, "check": [*seen, {"role": "assistant", "content": text}],
                "dialogue": [{"persona": "BRICK", "node": node, "turn": turn, "text": text}]}

    @staticmethod
    def _numeric(state: DialogueState) -> bool:
        return (state.get("form") or {}).get("form") == "number"

    # --- nodes -------------------------------------------------------------------------------
    def alfred_plan(self, state: DialogueState, config: RunnableConfig) -> dict:
        cancel = cancel_of(config)
        memories = state.get("memories", "")
        if self._recall is not None:
            try:
                memories = self._recall(state["task"])
            except Exception:  # memory is an aid; a failing store must not fail the task
                log.exception("memory recall failed; planning without memories")
        instruction = self._talk.fill(self._prompts.plan, {**state, "memories": memories})
        seen, plan = self._talk.speak("ALFRED", "alfred_plan", state, instruction, 0, self._config.plan_tokens,
                                      cancel, whole=True)
        form = self._talk.decide("ALFRED", "alfred_plan", state, seen, plan,
                                 self._talk.fill(self._prompts.form, state), schemas.FORM, 0, cancel)
        form["compute"] = False
        if form["form"] == "number":  # on the task alone: his plan must not talk him out of a range
            question = [{"role": "system", "content": self._talk.society()},
                        {"role": "user", "content": self._talk.fill(self._prompts.range_quote, state)}]
            quote = self._voices.decide("ALFRED", question, schemas.RANGE, task_id=state["task_id"],
                                        node="alfred_plan", turn=0, cancel=cancel)["range"]
            form.update(range=quote, compute=schemas.named_range(quote, state["task"]))
        self._voices.utterance("ALFRED", task_id=state["task_id"], node="alfred_plan", turn=0, text=plan, data=form)
        return {"plan": plan, "memories": memories, "form": form, "transcript": self._talk.exchange(instruction, plan),
                "dialogue": [{"persona": "ALFRED", "node": "alfred_plan", "turn": 0, "text": plan}]}

    def brick(self, state: DialogueState, config: RunnableConfig) -> dict:
        cancel = cancel_of(config)
        turn = state.get("turn", 0) + 1
        if turn == 1 and self._numeric(state) and (state.get("form") or {}).get("compute") and self._workshop:
            computed = self._program(state, cancel)
            if computed is not None:
                # his program stays out of the shared conversation (ROBIN answers blind); ALFRED writes the
                # answer on from it, as from his own working after a vote
                return {"turn": turn, "tool_request": None, "tool_call": None, "held": [],
                        **self._computed_update(state, "brick", turn, *computed)}
        template = self._prompts.thesis if turn == 1 else self._prompts.revision
        instruction = self._talk.fill(template, {**state, "turn": turn})
        held = state.get("held") or [] if turn > 1 else []  # his first answer, which he now revises
        seen, analysis = self._talk.speak("BRICK", "brick", state, instruction, turn, self._config.thesis_tokens,
                                          cancel, before=held)
        numeric = self._numeric(state)
        own = self._talk.own_number("BRICK", "brick", state, seen, analysis, turn, cancel)[1] if numeric else None
        data: dict[str, Any] = {"needs_tool": False, "tool_spec": ""}
        if self._config.tools:
            tools = self._workshop.usable_tools() if self._workshop else []
            question = self._talk.fill(self._prompts.tool_need, state, tools=tools_text(tools))
            data = self._talk.decide("BRICK", "brick", state, seen, analysis, question,
                                     schemas.tool_need_schema([t["name"] for t in tools]), turn, cancel)
        request = call = None
        if data["needs_tool"] and len(data["tool_spec"].split()) >= MIN_SPEC_WORDS:
            request = {"spec": data["tool_spec"].strip(), "turn": turn}
            self._bus.publish("tool_request", task_id=state["task_id"], turn=turn, name="", spec=request["spec"])
        if data.get("call_tool"):
            call = {"name": data["call_tool"], "arguments": data.get("arguments", {}), "turn": turn}
        self._voices.utterance("BRICK", task_id=state["task_id"], node="brick", turn=turn, text=analysis,
                               data={**data, **({"result": own} if numeric else {})})
        update: dict[str, Any] = {"turn": turn, "tool_request": request, "tool_call": call, "brick_result": own,
                                  "dialogue": [{"persona": "BRICK", "node": "brick", "turn": turn, "text": analysis}]}
        if turn == 1:  # held back until ROBIN has answered on her own (she is shown it to compare, or,
            # for a number, only his number is compared; his answer joins if he revises it)
            return {**update, "held": self._talk.exchange(instruction, analysis) if numeric else []}
        return {**update, "held": [], "transcript": [*held, *self._talk.exchange(instruction, analysis)]}

    def robin(self, state: DialogueState, config: RunnableConfig) -> dict:
        """Turn 1: ROBIN answers blind, then is shown BRICK's answer. Later turns: she checks his
        revision. When the task asks for one number she states both results as numbers and the graph
        compares them; otherwise she gives a verdict. Either, with the drift between the two texts,
        is the dissonance."""
        cancel = cancel_of(config)
        turn = state["turn"]
        blind = turn == 1
        numeric = self._numeric(state) and state.get("brick_result") is not None
        instruction = self._talk.fill(self._prompts.second_opinion if blind else self._prompts.antithesis, state)
        seen, reply = self._talk.speak("ROBIN", "robin", state, instruction, turn, self._config.antithesis_tokens,
                                       cancel)
        analysis = next((d["text"] for d in reversed(state.get("dialogue", [])) if d["node"] == "brick"), "")
        update: dict[str, Any] = {}
        if numeric:  # her own number (blind: the number her answer reached; later: the one she now holds)
            question, mine = self._talk.own_number("ROBIN", "robin", state, seen, reply, turn, cancel,
                                                   None if blind else self._prompts.results)
            data = {"result": mine}
            entry = {"turn": turn, "brick": state["brick_result"], "robin": mine,
                     **({"computed": True} if state.get("computed") else {})}
            verdict = "aligned" if numbers.same_number(entry["robin"], entry["brick"]) else "opposed"
            update["results"] = [entry]
        else:
            question = self._talk.fill(self._prompts.compare if blind else self._prompts.verdict, state, analysis=analysis)
            data = self._talk.decide("ROBIN", "robin", state, seen, reply, question, schemas.VERDICT, turn,
                                     cancel)
            verdict = data["verdict"]
        measured = dissonance.measure(verdict, analysis, reply, self._voices.embed,
                                      self._config.dissonance_embedding_weight)
        self._voices.record_dissonance("ROBIN", measured.value)
        self._voices.utterance("ROBIN", task_id=state["task_id"], node="robin", turn=turn, text=reply,
                               data={"dissonance": measured.value, **measured.as_map(),
                                     **({"results": update["results"][0]} if numeric else {})})
        self._bus.publish("dissonance", task_id=state["task_id"], turn=turn, value=measured.value,
                          verdict=measured.verdict, similarity=measured.similarity)
        # her answer and the question on it (with BRICK's answer in it, the first time, unless only
        # numbers are compared) join the conversation
        transcript = self._talk.exchange(instruction, reply) + self._talk.exchange(question, json.dumps(data))
        return {**update, "dissonance": [measured.value], "transcript": transcript,
                "dialogue": [{"persona": "ROBIN", "node": "robin", "turn": turn, "text": reply}]}

    def tool_forge(self, state: DialogueState, config: RunnableConfig) -> dict:
        cancel = cancel_of(config)
        """Forge the requested tool (BRICK writes it, the sandbox tests it); the outcome joins the dialogue."""
        request, turn, task_id = state["tool_request"] or {}, state["turn"], state["task_id"]

        def on_token(text: str) -> None:
            if cancel.is_set():
                raise TaskCancelled()
            self._bus.publish("token", task_id=task_id, persona="BRICK", node="tool_forge", turn=turn, text=text)

        outcome = self._workshop.forge(request.get("spec", ""), on_token=on_token, cancel=cancel)
        if cancel.is_set():
            raise TaskCancelled()
        return {"tool_request": None, "forges": state.get("forges", 0) + 1,
                **self._tool_round("tool_forge", "forge", outcome, state)}

    def tool_call(self, state: DialogueState, config: RunnableConfig) -> dict:
        cancel = cancel_of(config)
        """Run one registered tool in the sandbox; its result joins the dialogue."""
        call = state["tool_call"] or {}
        outcome = self._workshop.call(call.get("name", ""), call.get("arguments", {}), cancel=cancel)
        if cancel.is_set():
            raise TaskCancelled()
        return {"tool_call": None, "tool_calls": state.get("tool_calls", 0) + 1,
                **self._tool_round("tool_call", "call", outcome, state)}

    def _tool_round(self, node: str, kind: str, outcome: Any, state: DialogueState) -> dict:
        """A tool outcome becomes BRICK's utterance, a tool result and a line of the dialogue."""
        turn, task_id = state["turn"], state["task_id"]
        self._bus.publish("utterance", task_id=task_id, persona="BRICK", node=node, turn=turn,
                          text=outcome.summary, data={"ok": outcome.ok})
        return {"tool_results": [{"kind": kind, "ok": outcome.ok, "summary": outcome.summary}],
                "dialogue": [{"persona": "BRICK", "node": node, "turn": turn, "text": outcome.summary}]}

    def alfred_check(self, state: DialogueState, config: RunnableConfig) -> dict:
        """BRICK and ROBIN reached different numbers: ALFRED works the task out on his own, blind as
        ROBIN's first answer was (he reads the task and his plan, not their answers), and the three
        results go to a vote (a4ps.graph.results)."""
        cancel = cancel_of(config)
        turn = state["turn"]
        opening = window(state.get("transcript", []), self._config.transcript_chars)[:2]  # the task and the plan
        instruction = self._talk.fill(self._prompts.own_working, state)
        seen = [{"role": "system", "content": self._talk.society()}, *opening, {"role": "user", "content": instruction}]
        working = self._voices.speak("ALFRED", seen, task_id=state["task_id"], node="alfred_check", turn=turn,
                                     cancel=cancel, max_tokens=self._config.thesis_tokens) or "(no answer)"
        _, own = self._talk.own_number("ALFRED", "alfred_check", state, seen, working, turn, cancel)
        entry = {**state["results"][-1], "alfred": own}
        self._voices.utterance("ALFRED", task_id=state["task_id"], node="alfred_check", turn=turn, text=working,
                               data={"results": entry, "majority": numbers.majority(entry)})
        return {"results": [entry], "check": [*seen, {"role": "assistant", "content": working}],
                "dialogue": [{"persona": "ALFRED", "node": "alfred_check", "turn": turn, "text": working}]}

    def brick_compute(self, state: DialogueState, config: RunnableConfig) -> dict:
        """The three hand-worked numbers all differ: BRICK computes the number with a program run in the
        sandbox, a method that does not slip where hand working does, and its number settles the task.
        Measured on the quality bench: another round of revision after such a vote reached the right
        number once in seven, mostly agreeing on BRICK's first, wrong one. No number from the program:
        the debate goes on by hand."""
        cancel = cancel_of(config)
        turn = state["turn"]
        computed = self._program(state, cancel, node="brick_compute", turn=turn, template=self._prompts.recompute)
        if computed is None:
            return {"computed": False}
        number = computed[2]
        entry = {"turn": turn, "brick": number, "robin": state["results"][-1]["robin"], "computed": True}
        return {"results": [entry], **self._computed_update(state, "brick_compute", turn, *computed)}

    def alfred_synthesize(self, state: DialogueState, config: RunnableConfig) -> dict:
        """ALFRED's final answer; a number the society settled closes it on its own line (the codex's
        answer_line), so the result stands last and apart from the other numbers the prose mentions."""
        cancel = cancel_of(config)
        turn = state.get("turn", 0)
        form = state.get("form") or {}
        if form.get("form") == "code" and self._workshop is not None:  # (a4ps.graph.coding)
            answer = code_answer(self._talk, self._workshop, self._bus, state, cancel, turn=turn,
                                 prompts=self._prompts, fixes=self._config.code_fixes,
                                 max_tokens=self._config.synthesis_tokens)
            if answer is not None:
                return {"answer": answer}
        instruction = self._talk.fill(self._prompts.synthesis, state)
        layout = list_layout(form["items"], form["list_marker"]) if form.get("form") == "list" and form.get("items") else None
        if numbers.decided(state.get("results", [])) is not None or numbers.computed(state.get("results", [])):
            # two of three agree, ALFRED among them, or BRICK's program computed the number: ALFRED writes
            # the answer on from the working that reached it (his own, or the program), not from a
            # conversation in which other numbers were argued (and a local model re-reads nothing)
            messages = [*state["check"], {"role": "user", "content": instruction}]
            answer = self._voices.speak("ALFRED", messages, task_id=state["task_id"], node="alfred_synthesize",
                                        turn=turn, cancel=cancel, max_tokens=self._config.synthesis_tokens) or "(no answer)"
        else:
            _, answer = self._talk.speak("ALFRED", "alfred_synthesize", state, instruction, turn,
                                         self._config.synthesis_tokens, cancel, layout=layout)
        result = numbers.settled(state.get("results", []))
        if result is not None:
            line = "\n\n" + render(self._prompts.answer_line, result=shown(result))
            self._bus.publish("token", task_id=state["task_id"], persona="ALFRED", node="alfred_synthesize",
                              turn=turn, text=line)
            answer += line
        self._voices.utterance("ALFRED", task_id=state["task_id"], node="alfred_synthesize", turn=turn,
                               text=answer, data={"result": result} if result is not None else {})
        return {"answer": answer}

    def _build(self) -> Any:
        graph = StateGraph(DialogueState)
        graph.add_node("alfred_plan", self.alfred_plan)
        graph.add_node("brick", self.brick)
        graph.add_node("robin", self.robin)
        graph.add_node("tool_forge", self.tool_forge)
        graph.add_node("tool_call", self.tool_call)
        graph.add_node("alfred_check", self.alfred_check)
        graph.add_node("brick_compute", self.brick_compute)
        graph.add_node("alfred_synthesize", self.alfred_synthesize)
        graph.add_edge(START, "alfred_plan")
        graph.add_edge("alfred_plan", "brick")
        graph.add_edge("brick", "robin")
        graph.add_conditional_edges("robin", self._router.after_robin, ["brick", "tool_forge", "tool_call", "alfred_check",
                                                          "alfred_synthesize"])
        graph.add_conditional_edges("alfred_check", self._router.after_check,
                                    ["brick_compute", "brick", "alfred_synthesize"])
        graph.add_conditional_edges("brick_compute", self._router.after_compute, ["brick", "alfred_synthesize"])
        graph.add_conditional_edges("tool_forge", self._router.after_tool, ["brick", "tool_call", "alfred_synthesize"])
        graph.add_conditional_edges("tool_call", self._router.after_tool, ["brick", "alfred_synthesize"])
        graph.add_edge("alfred_synthesize", END)
        return graph.compile(checkpointer=self._checkpointer)

    # --- running -------------------------------------------------------------------------------
    def warm(self) -> None:
        """Have the model read the society's system message before the first task (a local model
        keeps it cached, so the first plan starts streaming after reading only the task)."""
        self._voices.warm("ALFRED", [{"role": "system", "content": self._talk.society()},
                                     {"role": "user", "content": "The person's task:"}])

    def run(self, task_id: str, task: str, memories: str = "",
            cancel: threading.Event | None = None) -> DialogueState:
        """Run one task to its synthesis; raises TaskCancelled once `cancel` is set (even if set before).

        With a checkpointer every completed node is saved under the task id, so a task interrupted
        by a shutdown or a crash resumes at its last completed node instead of starting again."""
        config: RunnableConfig = {"configurable": {"thread_id": task_id, "cancel": cancel or threading.Event()},
                                  "recursion_limit": 6 * self._config.max_turns + 10}
        if self._checkpointer is not None:
            saved = self._compiled.get_state(config)
            # A kill can land after a node's writes were saved but before the next checkpoint: LangGraph
            # then lists that node under `tasks` (with its writes) rather than `next`. Either way the
            # run is unfinished, and invoke(None) applies the saved writes and goes on from there.
            if saved.next or saved.tasks:
                at = list(saved.next) or [t.name for t in saved.tasks]
                done = len(saved.values.get("dialogue", []))
                log.info("task %s resumes at %s (%d utterance(s) kept)", task_id, ", ".join(at), done)
                self._bus.publish("task_resumed", task_id=task_id, at=at, utterances=done)
                return self._compiled.invoke(None, config)
            self.forget(task_id)  # a finished or foreign record must not be added to
        initial: DialogueState = {"task_id": task_id, "task": task, "memories": memories, "turn": 0,
                                  "transcript": [], "dialogue": [], "dissonance": [], "tool_results": [],
                                  "forges": 0, "tool_calls": 0, "tool_request": None, "tool_call": None,
                                  "results": [], "check": [], "brick_result": None, "computed": False, "held": []}
        return self._compiled.invoke(initial, config)

    def forget(self, task_id: str) -> None:
        """Drop a task's saved progress (it finished, failed or was cancelled by the user)."""
        if self._checkpointer is not None:
            self._checkpointer.delete_thread(task_id)
