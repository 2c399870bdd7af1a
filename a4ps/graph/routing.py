"""Where one task's graph goes next: the conditional edges after ROBIN, after ALFRED's vote and after
a tool round. Functions of the state alone (and of the settings), so a resumed task routes as the
uninterrupted one would have."""

from __future__ import annotations

import logging

from a4ps.config.schema import Graph
from a4ps.events import EventBus
from a4ps.graph import results as numbers
from a4ps.graph.state import DialogueState

log = logging.getLogger("a4ps.graph.socratic")  # one logger for the graph's decisions


class Router:
    def __init__(self, settings: Graph, bus: EventBus, has_workshop: bool):
        self._settings = settings
        self._bus = bus
        self._has_workshop = has_workshop

    def after_robin(self, state: DialogueState) -> str:
        """Where to go after ROBIN: forge a requested tool, argue again, or synthesize."""
        turn, values = state["turn"], state.get("dissonance", [])
        threshold, max_turns = self._settings.convergence_threshold, self._settings.max_turns
        request, call = state.get("tool_request"), state.get("tool_call")
        if request:
            if self._has_workshop and state.get("forges", 0) < max_turns:
                return "tool_forge"
            if not self._has_workshop:
                log.info("BRICK asked for a tool (%s) but no tool forge is installed; continuing without it",
                         request["spec"][:120])
        if call and self._has_workshop and state.get("tool_calls", 0) < max_turns:
            return "tool_call"
        if numbers.computed(state.get("results", [])):
            return "alfred_synthesize"  # a computed number is not argued over by hand
        if numbers.disputed(state.get("results", []), turn):
            return "alfred_check"
        if values and values[-1] > threshold and turn < max_turns:
            return "brick"
        if turn >= max_turns and values and all(v > threshold for v in values):
            self._bus.publish("high_cognitive_dissonance", task_id=state["task_id"], values=list(values),
                              threshold=threshold)
        return "alfred_synthesize"

    def after_check(self, state: DialogueState) -> str:
        """A vote with a majority is settled; three different numbers go to BRICK's program (with the
        sandbox at hand), else to another round, if any is left."""
        if numbers.decided(state["results"]) is not None:
            return "alfred_synthesize"
        return "brick_compute" if self._has_workshop else self.after_compute(state)

    def after_compute(self, state: DialogueState) -> str:
        """A computed number settles the task; without one the debate goes on by hand, if turns are left."""
        if numbers.computed(state["results"]) or state["turn"] >= self._settings.max_turns:
            return "alfred_synthesize"
        return "brick"

    def after_tool(self, state: DialogueState) -> str:
        """After a tool round BRICK continues, unless the turns are used up."""
        if state.get("tool_call") and self._has_workshop and state.get("tool_calls", 0) < self._settings.max_turns:
            return "tool_call"
        return "brick" if state["turn"] < self._settings.max_turns else "alfred_synthesize"
