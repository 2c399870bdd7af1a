"""Socratic graph routing: convergence, the max_turns bound, the dissonance events, tool requests."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from a4ps.config import load_codex, load_settings
from a4ps.config.schema import Graph
from a4ps.events import EventBus
from a4ps.graph import SocraticGraph, TaskCancelled
from a4ps.graph.voice import Voices
from a4ps.models import ModelManager
from a4ps.models.embedded import EmbeddedProvider
from a4ps.models.ollama_provider import OllamaProvider
from a4ps.protos import ProtoManager
from tests.support.config import plumbing_model
from tests.support.ollama_standin import OllamaStandIn

MODELS = ["llama3.2:3b", "phi3:mini", "gemma2:2b"]


class Script:
    """Answers by schema: plan, thesis (optionally asking for a tool), antithesis with scripted dissonance."""

    def __init__(self, dissonance, tool_on_turn=None):
        self.dissonance = list(dissonance)
        self.tool_on_turn = tool_on_turn
        self.thesis_count = 0
        self.models_seen = []

    def __call__(self, model, messages, fmt):
        self.models_seen.append(model)
        props = fmt["properties"]
        if "plan" in props:
            return json.dumps({"plan": "1. Understand. 2. Answer."})
        if "analysis" in props:
            self.thesis_count += 1
            wants = self.thesis_count == self.tool_on_turn
            answer = {"analysis": f"Analysis {self.thesis_count}.", "needs_tool": wants,
                      "tool_spec": "count words in a text" if wants else ""}
            if "call_tool" in props:
                answer.update(call_tool="", arguments={})
            return json.dumps(answer)
        if "dissonance" in props:
            return json.dumps({"response": "I feel you.", "dissonance": self.dissonance.pop(0)})
        return json.dumps({"answer": "Final answer."})


def build(host, bus, graph_config, codex=None, workshop=None, recall=None):
    settings = load_settings()
    settings.models.ollama.host = host
    codex = codex or load_codex()
    protos = ProtoManager.from_codex(codex, "ollama")
    models = ModelManager(OllamaProvider(settings.models.ollama))
    voices = Voices(models, protos, bus, settings.models.max_tokens)
    return SocraticGraph(voices, codex, graph_config, bus, workshop=workshop, recall=recall), protos


def collect(bus):
    events = []
    bus.subscribe("*", lambda e: events.append(e))
    return events


@pytest.mark.parametrize("dissonance, max_turns, turns, high", [
    ([0.1], 3, 1, False),            # converges at once
    ([0.9, 0.8, 0.2], 4, 3, False),  # converges on turn 3
    ([0.9, 0.9, 0.9], 3, 3, True),   # never converges: bounded by max_turns, high dissonance
    ([0.9, 0.3, 0.9], 3, 2, False),
])
def test_routing(dissonance, max_turns, turns, high):
    script = Script(dissonance)
    bus = EventBus()
    events = collect(bus)
    with OllamaStandIn(models=MODELS, responder=script) as server:
        graph, protos = build(server.host, bus, Graph(convergence_threshold=0.5, max_turns=max_turns))
        final = graph.run("t1", "How do I make tea?")
    assert final["turn"] == turns and final["answer"] == "Final answer."
    assert final["dissonance"] == dissonance[:turns]
    assert [e.payload["value"] for e in events if e.topic == "dissonance"] == dissonance[:turns]
    assert [e.payload["turn"] for e in events if e.topic == "dissonance"] == list(range(1, turns + 1))
    assert any(e.topic == "high_cognitive_dissonance" for e in events) is high
    nodes = [(e.payload["persona"], e.payload["node"]) for e in events if e.topic == "utterance"]
    assert nodes == [("ALFRED", "alfred_plan")] + [("BRICK", "brick"), ("ROBIN", "robin")] * turns + \
        [("ALFRED", "alfred_synthesize")]
    # each persona used its own model, and the proto remembers the last dissonance
    assert set(script.models_seen) == set(MODELS)
    assert protos.get("ROBIN").last_dissonance == dissonance[turns - 1]
    assert all(p["status"] == "idle" for p in protos.snapshot())


def test_plan_receives_recalled_memories():
    plan_prompts = []

    def responder(model, messages, fmt):
        if "plan" in fmt["properties"]:
            plan_prompts.append(messages[-1]["content"])
        return Script([0.1])(model, messages, fmt)

    bus = EventBus()
    with OllamaStandIn(models=MODELS, responder=responder) as server:
        graph, _ = build(server.host, bus, Graph(convergence_threshold=0.5, max_turns=2),
                         recall=lambda task: f"- earlier task about {task[:9]}: steep green tea 2 minutes")
        final = graph.run("m1", "Green tea: how long?")
    assert "- earlier task about Green tea: steep green tea 2 minutes" in plan_prompts[0]
    assert final["memories"].startswith("- earlier task")


def test_tool_request_without_forge_is_captured_and_logged(caplog):
    bus = EventBus()
    events = collect(bus)
    with OllamaStandIn(models=MODELS, responder=Script([0.9, 0.1], tool_on_turn=1)) as server:
        graph, _ = build(server.host, bus, Graph(convergence_threshold=0.5, max_turns=3))
        with caplog.at_level(logging.INFO):
            final = graph.run("t2", "How many words are in this sentence?")
    requests = [e for e in events if e.topic == "tool_request"]
    assert len(requests) == 1 and requests[0].payload["spec"] == "count words in a text"
    assert "no tool forge is installed" in caplog.text
    assert final["turn"] == 2


class FakeOutcome:
    def __init__(self, ok, summary):
        self.ok, self.summary = ok, summary


class RecordingWorkshop:
    """Stands in for the ToolForge to test graph routing only (the forge has its own tests)."""

    def __init__(self, tools=()):
        self.tools, self.forged, self.called = list(tools), [], []

    def usable_tools(self):
        return [{"name": n, "signature": f"{n}(text)", "docstring": "counts"} for n in self.tools]

    def forge(self, spec, *, on_token=None, cancel=None):
        self.forged.append(spec)
        self.tools.append("word_count")
        return FakeOutcome(True, "tool word_count(text) created")

    def call(self, name, arguments):
        self.called.append((name, arguments))
        return FakeOutcome(True, f"{name} returned 4")


def test_tool_request_goes_through_the_forge_node_then_back_to_brick():
    workshop = RecordingWorkshop()
    bus = EventBus()
    with OllamaStandIn(models=MODELS, responder=Script([0.9, 0.1], tool_on_turn=1)) as server:
        graph, _ = build(server.host, bus, Graph(convergence_threshold=0.5, max_turns=3), workshop=workshop)
        final = graph.run("t3", "How many words?")
    assert workshop.forged == ["count words in a text"]
    assert final["tool_results"] == [{"kind": "forge", "ok": True, "summary": "tool word_count(text) created"}]
    assert [d["node"] for d in final["dialogue"]] == ["alfred_plan", "brick", "robin", "tool_forge", "brick", "robin"]
    assert final["turn"] == 2


def test_brick_calls_a_registered_tool_through_the_schema_enum():
    workshop = RecordingWorkshop(tools=["word_count"])
    seen_formats = []

    def responder(model, messages, fmt):
        props = fmt["properties"]
        if "analysis" in props:
            seen_formats.append(fmt)
            calls = len(workshop.called) == 0
            return json.dumps({"analysis": "Count them.", "needs_tool": False, "tool_spec": "",
                               "call_tool": "word_count" if calls else "", "arguments": {"text": "a b c d"}})
        if "dissonance" in props:
            return json.dumps({"response": "ok", "dissonance": 0.1})
        return Script([])(model, messages, fmt)

    bus = EventBus()
    with OllamaStandIn(models=MODELS, responder=responder) as server:
        graph, _ = build(server.host, bus, Graph(convergence_threshold=0.5, max_turns=3), workshop=workshop)
        final = graph.run("t5", "How many words in 'a b c d'?")
    assert seen_formats[0]["properties"]["call_tool"]["enum"] == ["", "word_count"]
    assert workshop.called == [("word_count", {"text": "a b c d"})]
    assert "word_count returned 4" in [d["text"] for d in final["dialogue"] if d["node"] == "tool_call"]


def test_cancel_stops_mid_answer():
    bus = EventBus()
    with OllamaStandIn(models=MODELS, responder=Script([0.9] * 5)) as server:
        graph, protos = build(server.host, bus, Graph(convergence_threshold=0.5, max_turns=5))
        cancel = threading.Event()
        bus.subscribe("token", lambda e: cancel.set() if e.payload["persona"] == "BRICK" else None)
        with pytest.raises(TaskCancelled):
            graph.run("t4", "Anything", cancel=cancel)
    assert protos.get("BRICK").status == "idle"


def test_real_embedded_model_respects_the_bounds():
    """The real SmolLM2: whatever it says, the loop ends within max_turns and the rules hold."""
    settings = plumbing_model(load_settings())
    codex = load_codex()
    bus = EventBus()
    events = collect(bus)
    protos = ProtoManager.from_codex(codex, "embedded")
    models = ModelManager(EmbeddedProvider(settings.models.embedded), json_retries=2)
    voices = Voices(models, protos, bus, 200)
    config = Graph(convergence_threshold=0.5, max_turns=2)
    graph = SocraticGraph(voices, codex, config, bus)
    final = graph.run("e1", "Suggest a name for a grey cat.")
    models.unload()
    values = final["dissonance"]
    assert 1 <= final["turn"] <= 2 and len(values) == final["turn"]
    assert all(0.0 <= v <= 1.0 for v in values)
    if final["turn"] < 2:
        assert values[-1] <= 0.5
    high = [e for e in events if e.topic == "high_cognitive_dissonance"]
    assert bool(high) == (final["turn"] == 2 and all(v > 0.5 for v in values))
    assert final["answer"].strip()
    assert any(e.topic == "token" and e.payload["persona"] == "ROBIN" for e in events)
