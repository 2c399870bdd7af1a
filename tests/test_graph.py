"""Socratic graph routing: convergence, the max_turns bound, the dissonance events, tool requests,
the shared conversation, and the combined dissonance measure."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from a4ps.backend.compose import build_executor
from a4ps.config import load_codex, load_settings
from a4ps.config.templates import shown
from a4ps.events import EventBus
from a4ps.forge.code_check import check_code
from a4ps.forge.program import run_program
from a4ps.graph import SocraticGraph, TaskCancelled
from a4ps.graph import results as numbers, schemas
from a4ps.graph.dissonance import VERDICT_VALUES, measure, off_topic
from a4ps.graph.state import window
from a4ps.graph.voice import Voices, complete_part
from a4ps.models import ModelManager
from a4ps.models.embedded import EmbeddedProvider
from a4ps.models.ollama_provider import OllamaProvider
from a4ps.protos import ProtoManager
from tests.support.config import plumbing_model
from tests.support.ollama_standin import OllamaStandIn

MODELS = ["llama3.2:3b", "phi3:mini", "gemma2:2b"]


def graph_config(**overrides):
    """The project's [graph] settings; the embedding weight 0 makes scripted verdicts exact."""
    values = {**load_settings().graph.model_dump(), "dissonance_embedding_weight": 0.0, **overrides}
    return type(load_settings().graph)(**values)


def speaker(messages):
    """Which instruction the last user message is (the codex names the persona who speaks next)."""
    last = messages[-1]["content"]
    for prefix, node in (("The person's task", "plan"), ("BRICK's part: answer", "thesis"),
                         ("BRICK's part: ROBIN has", "revision"),
                         ("ROBIN's part: answer the person's task yourself", "second_opinion"), ("ROBIN's part", "antithesis"),
                         ("ALFRED's part: before the final", "own_working"),
                         ("ALFRED's part: write the final code", "final_code"),
                         ("ALFRED's part: write the final", "synthesis"),
                         ("ALFRED's part: this is the code", "code_answer")):
        if last.startswith(prefix):
            return node
    return None


class Script:
    """Prose for each instruction; the constrained follow-ups: a tool decision and scripted verdicts."""

    def __init__(self, verdicts, tool_on_turn=None, form="prose", results=(), own=(), compute="", program=None,
                 fixed=None, code=()):
        self.verdicts = list(verdicts)
        self.form = form
        # ALFRED's quote of the range the task names (a string; "": none); BRICK's program (None: garbage)
        self.compute, self.program = compute, program
        self.fixed = fixed  # BRICK's program when shown why his last one failed (None: the same one again)
        self.code = list(code)  # ALFRED's final code, one answer per try ({"lines", "checks"}; None: garbage)
        self.round = None
        self.results = list(results)  # number tasks: (ROBIN's, BRICK's) number per round
        self.own = list(own)  # number tasks: ALFRED's own result, when he is asked for one
        self.tool_on_turn = tool_on_turn
        self.thesis_count = 0
        self.models_seen = []
        self.calls = []

    def __call__(self, model, messages, fmt):
        self.models_seen.append(model)
        self.calls.append(messages)
        if fmt is None:
            node = speaker(messages)
            assert node is not None, f"unexpected instruction: {messages[-1]['content'][:80]}"
            assert node is not None, f"unexpected instruction: {messages[-1]['content'][:80]}"
            if node in ("thesis", "revision"):
                self.thesis_count += 1
                return f"Analysis {self.thesis_count}."
            return {"plan": "1. Understand. 2. Answer.", "antithesis": "I feel you.",
                    "second_opinion": "My own answer.", "own_working": "My working.", "synthesis": "Final answer.",
                    "code_answer": "This is how the code works."}[node]
        props = fmt["properties"]
        if "form" in props:
            return json.dumps({"form": self.form, "items": 0, "list_marker": "1."})
        if "range" in props:
            return json.dumps({"range": self.compute or ""})
        if "checks" in props:  # ALFRED's checks of the code he just gave
            return json.dumps({"checks": self.code[0]["checks"]})
        if "lines" in props and messages[-1]["content"].startswith(("ALFRED's part", "ALFRED, in the sandbox")):
            if messages[-1]["content"].startswith("ALFRED, in the sandbox") and len(self.code) > 1:
                self.code.pop(0)  # his code, mended
            return json.dumps({"lines": self.code[0]["lines"]}) if self.code[0] is not None else "import this"
        if "lines" in props:
            mending = messages[-1]["content"].startswith("BRICK, in the sandbox")
            program = self.fixed if mending and self.fixed is not None else self.program
            return json.dumps({"lines": program}) if program is not None else "import this"
        if "needs_tool" in props:
            wants = self.thesis_count == self.tool_on_turn
            answer = {"needs_tool": wants, "tool_spec": "count words in a text" if wants else ""}
            if "call_tool" in props:
                answer.update(call_tool="", arguments={})
            return json.dumps(answer)
        if "result" in props:  # each voice states its own number: BRICK first in a round, then ROBIN
            asker = messages[-1]["content"].split(",", 1)[0]
            if asker == "BRICK" or self.round is None:  # (a computed round: BRICK states no number)
                self.round = self.results.pop(0)
            number = {"ROBIN": self.round[0], "BRICK": self.round[1]}.get(asker)
            return json.dumps({"result": self.own.pop(0) if number is None else number})
        return json.dumps({"verdict": self.verdicts.pop(0)})


def build(host, bus, config, codex=None, workshop=None, recall=None):
    settings = load_settings()
    settings.models.ollama.host = host
    codex = codex or load_codex()
    protos = ProtoManager.from_codex(codex, "ollama")
    models = ModelManager(OllamaProvider(settings.models.ollama))
    voices = Voices(models, protos, bus, settings.models.max_tokens)
    return SocraticGraph(voices, codex, config, bus, workshop=workshop, recall=recall), protos


def collect(bus):
    events = []
    bus.subscribe("*", lambda e: events.append(e))
    return events


@pytest.mark.parametrize("verdicts, max_turns, turns, high", [
    (["aligned"], 3, 1, False),                        # converges at once
    (["opposed", "major", "aligned"], 4, 3, False),   # converges on turn 3
    (["opposed", "opposed", "major"], 3, 3, True),    # never converges: bounded by max_turns, high dissonance
    (["opposed", "minor", "opposed"], 3, 2, False),
])
def test_routing(verdicts, max_turns, turns, high):
    script = Script(verdicts)
    bus = EventBus()
    events = collect(bus)
    with OllamaStandIn(models=MODELS, responder=script) as server:
        graph, protos = build(server.host, bus, graph_config(convergence_threshold=0.5, max_turns=max_turns))
        final = graph.run("t1", "How do I make tea?")
    values = [VERDICT_VALUES[v] for v in verdicts[:turns]]
    assert final["turn"] == turns and final["answer"] == "Final answer."
    assert final["dissonance"] == values
    assert [e.payload["value"] for e in events if e.topic == "dissonance"] == values
    assert [e.payload["verdict"] for e in events if e.topic == "dissonance"] == verdicts[:turns]
    assert [e.payload["turn"] for e in events if e.topic == "dissonance"] == list(range(1, turns + 1))
    assert any(e.topic == "high_cognitive_dissonance" for e in events) is high
    nodes = [(e.payload["persona"], e.payload["node"]) for e in events if e.topic == "utterance"]
    assert nodes == [("ALFRED", "alfred_plan")] + [("BRICK", "brick"), ("ROBIN", "robin")] * turns + \
        [("ALFRED", "alfred_synthesize")]
    # each persona used its own model, and the proto remembers the last dissonance
    assert set(script.models_seen) == set(MODELS)
    assert protos.get("ROBIN").last_dissonance == values[-1]
    assert all(p["status"] == "idle" for p in protos.snapshot())
    # every model call is recorded with its token counts
    assert sum(1 for e in events if e.topic == "model_call") == len(script.calls)


def test_the_personas_share_one_growing_conversation_and_robin_first_answers_blind():
    """Every prompt extends the one before (the prefix a local model has cached), except ROBIN's first
    answer: she answers without BRICK's answer in view, and is shown it afterwards to compare. The
    society's system message names every persona from the codex; the task opens the conversation."""
    script = Script(["major", "aligned"])
    with OllamaStandIn(models=MODELS, responder=script) as server:
        graph, _ = build(server.host, EventBus(), graph_config(convergence_threshold=0.5, max_turns=3))
        final = graph.run("c1", "Is 91 a prime number?")
    kinds = ("plan", "thesis", "second_opinion", "revision", "antithesis", "synthesis")
    prose = [m for m in script.calls if speaker(m) in kinds]
    system = prose[0][0]["content"]
    assert all(name in system for name in ("ALFRED", "BRICK", "ROBIN"))
    assert "Is 91 a prime number?" in prose[0][1]["content"]
    assert [speaker(m) for m in prose] == ["plan", "thesis", "second_opinion", "revision", "antithesis", "synthesis"]
    plan, thesis, blind = prose[0], prose[1], prose[2]
    assert thesis[:len(plan)] == plan
    # blind: the plan exchange is shared, BRICK's answer is nowhere in what ROBIN reads
    assert blind[:3] == thesis[:3] and not any("Analysis 1." in m["content"] for m in blind)
    for before, after in zip(prose[2:], prose[3:]):
        assert after[:len(before)] == before, "a prompt did not extend the previous one"
    # the comparison: after her own answer, she is shown BRICK's and gives her verdict on it
    verdict_calls = [m for m in script.calls if m[-1]["content"].startswith(("Here is BRICK's", "ROBIN's verdict"))]
    assert len(verdict_calls) == 2
    compare, check = verdict_calls
    assert compare[-2] == {"role": "assistant", "content": "My own answer."}
    assert "Analysis 1." in compare[-1]["content"] and compare[:-2] == blind
    assert check[-2] == {"role": "assistant", "content": "I feel you."}
    # BRICK's first answer is in the conversation from the comparison on, and so reaches the synthesis
    assert any("Analysis 1." in m["content"] for m in prose[-1])
    assert [d["node"] for d in final["dialogue"]] == ["alfred_plan", "brick", "robin", "brick", "robin"]


def test_number_tasks_compare_results_in_code_and_a_dispute_goes_to_a_blind_vote():
    """When the answer is one number, BRICK and ROBIN each state the number their own answer reached
    (as JSON, right after it) and the graph compares them; ROBIN never reads BRICK's working. Different
    numbers are not argued over: ALFRED works the task out on his own (he reads the task and his plan,
    not their answers), and when two of the three agree that number is the result; he writes the answer
    on from his own working, told the vote."""
    script = Script([], form="number", results=[(24, 27)], own=[24.0])
    bus = EventBus()
    events = collect(bus)
    with OllamaStandIn(models=MODELS, responder=script) as server:
        graph, _ = build(server.host, bus, graph_config(convergence_threshold=0.5, max_turns=3))
        final = graph.run("n1", "How many dollars does Ana pay?")
    assert final["turn"] == 1 and final["results"] == [{"turn": 1, "brick": 27, "robin": 24},
                                                       {"turn": 1, "brick": 27, "robin": 24, "alfred": 24}]
    assert [e.payload["verdict"] for e in events if e.topic == "dissonance"] == ["opposed"]
    nodes = [e.payload["node"] for e in events if e.topic == "utterance"]
    assert nodes == ["alfred_plan", "brick", "robin", "alfred_check", "alfred_synthesize"]
    asked = {m[-1]["content"].split(",", 1)[0]: m for m in script.calls if "as JSON: \"result\"" in m[-1]["content"]}
    assert sorted(asked) == ["ALFRED", "BRICK", "ROBIN"]
    assert asked["BRICK"][-2] == {"role": "assistant", "content": "Analysis 1."}  # his own, straight after it
    assert asked["ROBIN"][-2] == {"role": "assistant", "content": "My own answer."}
    robin = [call for call in script.calls if call[-1]["content"].startswith(("ROBIN", "ROBIN's part"))]
    assert len(robin) == 2 and not any("Analysis 1." in m["content"] for call in robin for m in call)
    own = next(m for m in script.calls if speaker(m) == "own_working")
    plan = next(m for m in script.calls if speaker(m) == "plan")
    assert own[:len(plan)] == plan and len(own) == len(plan) + 2  # the task and his plan, then the request
    assert not any(text in m["content"] for m in own for text in ("Analysis 1.", "My own answer."))
    synthesis = next(m for m in script.calls if speaker(m) == "synthesis")
    assert synthesis[:len(own)] == own and synthesis[len(own)] == {"role": "assistant", "content": "My working."}
    assert "BRICK 27, ROBIN 24, ALFRED 24. Two of the three reached 24: that is the result." in synthesis[-1]["content"]
    assert final["answer"] == "Final answer.\n\nAnswer: 24"  # the settled number closes it, on its own line
    answer = next(e.payload for e in events if e.topic == "utterance" and e.payload["node"] == "alfred_synthesize")
    assert answer["text"] == final["answer"] and answer["data"] == {"result": 24}
    streamed = "".join(e.payload["text"] for e in events if e.topic == "token" and e.payload["node"] == "alfred_synthesize")
    assert streamed.endswith("Final answer.\n\nAnswer: 24")
    assert script.verdicts == [] and script.results == [] and script.own == []  # no verdict was asked for


def test_three_different_numbers_go_to_another_round_with_every_result_told():
    """No two of three agree: BRICK revises in the shared conversation, told all three numbers; ROBIN
    compares again, and the synthesis reads the whole conversation. Only one vote per task."""
    script = Script([], form="number", results=[(24, 27), (25, 25)], own=[30])
    with OllamaStandIn(models=MODELS, responder=script) as server:
        graph, _ = build(server.host, EventBus(), graph_config(convergence_threshold=0.5, max_turns=3))
        final = graph.run("n2", "How many dollars does Ana pay?")
    assert final["turn"] == 2 and final["results"][-1] == {"turn": 2, "brick": 25, "robin": 25}
    revision = next(m for m in script.calls if speaker(m) == "revision")
    assert "BRICK 27, ROBIN 24, ALFRED 30. All three differ" in revision[-1]["content"]
    assert revision[-2] == {"role": "assistant", "content": "Analysis 1."}  # his first answer, held back till now
    assert not any("My working." in m["content"] for m in revision)  # his working stays his own
    synthesis = next(m for m in script.calls if speaker(m) == "synthesis")
    assert "BRICK and ROBIN reached the same result: 25." in synthesis[-1]["content"]
    assert any("Analysis 2." in m["content"] for m in synthesis)
    assert script.own == [] and script.results == []
    assert final["answer"] == "Final answer.\n\nAnswer: 25"  # both reached it on their own: settled


def test_the_vote_counts_two_equal_numbers_of_three():
    assert numbers.majority({"turn": 1, "brick": 27, "robin": 24, "alfred": 24.0000000001}) == 24
    assert numbers.majority({"turn": 1, "brick": 27, "robin": 24, "alfred": 27}) == 27
    assert numbers.majority({"turn": 1, "brick": 1, "robin": 2, "alfred": 3}) is None
    assert numbers.disputed([{"turn": 1, "brick": 1, "robin": 2}], 1)
    assert not numbers.disputed([{"turn": 1, "brick": 2, "robin": 2}], 1)
    assert not numbers.disputed([{"turn": 1, "brick": 1, "robin": 2}], 2)  # not this round's
    assert not numbers.disputed([{"turn": 1, "brick": 1, "robin": 2, "alfred": 3},
                                 {"turn": 2, "brick": 1, "robin": 2}], 2)  # one vote per task


@pytest.mark.parametrize("quote, task, named", [
    ("from 1 to 100", "How many 7s are written from 1 to 100?", True),
    ("From 1 to 100.", "How many 7s are written from 1 to 100?", True),   # case and a closing full stop
    ("below 2,000,000", "The sum of the primes below 2,000,000?", True),
    ("from 1 to 200", "How many 7s are written from 1 to 100?", False),  # not the task's words
    ("every number", "Add up every number you see.", False),              # no number in it
    ("", "How many 7s are written from 1 to 100?", False),
])
def test_a_range_is_believed_only_in_the_task_s_own_words(quote, task, named):
    assert schemas.named_range(quote, task) is named


def test_a_task_without_a_named_range_is_worked_by_hand_even_with_a_quote(sandboxed):
    """ALFRED quotes words that are not the task's: no program, BRICK works it out by hand."""
    script = Script([], form="number", compute="from 1 to 1000", program=SEVENS, results=[(24, 24)])
    workshop, final, events = run_with_sandbox(sandboxed, script, "c5", "How many dollars does Ana pay for 3 books at 8 dollars?")
    assert workshop.programs == [] and script.thesis_count == 1 and not final["computed"]
    plan = next(e.payload for e in events if e.topic == "utterance" and e.payload["node"] == "alfred_plan")
    assert plan["data"]["range"] == "from 1 to 1000" and plan["data"]["compute"] is False
    asked = next(m for m in script.calls if "quote the exact words" in m[-1]["content"])
    assert len(asked) == 2 and asked[-1]["content"].startswith("The person's task: How many dollars")  # the task alone


def test_the_settled_number_is_the_program_s_the_vote_s_or_the_one_both_reached():
    assert numbers.settled([]) is None
    assert numbers.settled([{"turn": 1, "brick": 20, "robin": 21, "computed": True}]) == 20
    assert numbers.settled([{"turn": 1, "brick": 27, "robin": 24, "alfred": 24}]) == 24
    assert numbers.settled([{"turn": 1, "brick": 1, "robin": 2, "alfred": 3}]) is None  # no majority
    assert numbers.settled([{"turn": 1, "brick": 5, "robin": 5.0000000001}]) == 5
    assert numbers.settled([{"turn": 1, "brick": 1, "robin": 2, "alfred": 3},
                            {"turn": 2, "brick": 4, "robin": 6}]) is None  # the last round disagrees


@pytest.mark.parametrize("value, text", [(24.0, "24"), (1234567.0, "1234567"), (-3.0, "-3"), (2.5, "2.5"),
                                         (0.1 + 0.2, "0.3"), (1 / 3, "0.333333"), (1e-7, "1e-07")])
def test_numbers_are_written_as_a_person_writes_them(value, text):
    assert shown(value) == text
    assert "1234567" in numbers.results_text([{"turn": 1, "brick": 1234567.0, "robin": 1234567.0}])


def test_window_keeps_the_task_and_the_latest_turns():
    transcript = [{"role": "user", "content": "task " * 10}, {"role": "assistant", "content": "plan"}]
    for turn in range(10):
        transcript += [{"role": "user", "content": f"instruction {turn} " + "x" * 300},
                       {"role": "assistant", "content": f"answer {turn} " + "y" * 300}]
    kept = window(transcript, 2000)
    assert kept[:2] == transcript[:2] and kept[-1] == transcript[-1]
    assert kept[2]["content"] == "(earlier turns omitted)"
    assert sum(len(m["content"]) for m in kept) <= 2000 + 100
    assert [m["role"] for m in kept] == ["user", "assistant"] * (len(kept) // 2)
    assert window(transcript[:6], 10_000) == transcript[:6]


def test_dissonance_combines_the_verdict_with_the_topic_distance():
    vectors = {"analysis": [1.0, 0.0, 0.0], "on topic": [0.9, 0.1, 0.0], "off topic": [0.0, 0.0, 1.0]}
    embed = lambda texts: [vectors[t] for t in texts]  # noqa: E731 - the measure only needs a callable
    agreeing = measure("aligned", "analysis", "on topic", embed, 0.4)
    drifting = measure("aligned", "analysis", "off topic", embed, 0.4)
    contradicting = measure("opposed", "analysis", "on topic", embed, 0.4)
    assert agreeing.value < 0.1 < drifting.value and agreeing.value < contradicting.value
    assert drifting.value == pytest.approx(0.6 * 0.1 + 0.4 * 1.0)
    assert measure("major", "analysis", "off topic", None, 0.4).value == VERDICT_VALUES["major"]
    assert off_topic(0.9) == 0.0 and off_topic(0.0) == 1.0


def test_plan_receives_recalled_memories():
    script = Script(["aligned"])
    bus = EventBus()
    with OllamaStandIn(models=MODELS, responder=script) as server:
        graph, _ = build(server.host, bus, graph_config(convergence_threshold=0.5, max_turns=2),
                         recall=lambda task: f"- earlier task about {task[:9]}: steep green tea 2 minutes")
        final = graph.run("m1", "Green tea: how long?")
    plan_prompt = next(m for m in script.calls if speaker(m) == "plan")[-1]["content"]
    assert "- earlier task about Green tea: steep green tea 2 minutes" in plan_prompt
    assert final["memories"].startswith("- earlier task")


def test_tool_request_without_forge_is_captured_and_logged(caplog):
    bus = EventBus()
    events = collect(bus)
    with OllamaStandIn(models=MODELS, responder=Script(["opposed", "aligned"], tool_on_turn=1)) as server:
        graph, _ = build(server.host, bus, graph_config(convergence_threshold=0.5, max_turns=3))
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

    def call(self, name, arguments, *, cancel=None):
        self.called.append((name, arguments))
        return FakeOutcome(True, f"{name} returned 4")


def test_tool_request_goes_through_the_forge_node_then_back_to_brick():
    workshop = RecordingWorkshop()
    script = Script(["opposed", "aligned"], tool_on_turn=1)
    with OllamaStandIn(models=MODELS, responder=script) as server:
        graph, _ = build(server.host, EventBus(), graph_config(convergence_threshold=0.5, max_turns=3),
                         workshop=workshop)
        final = graph.run("t3", "How many words?")
    assert workshop.forged == ["count words in a text"]
    assert final["tool_results"] == [{"kind": "forge", "ok": True, "summary": "tool word_count(text) created"}]
    assert [d["node"] for d in final["dialogue"]] == ["alfred_plan", "brick", "robin", "tool_forge", "brick", "robin"]
    assert final["turn"] == 2
    # BRICK's next instruction carries the tool result
    revision = next(m for m in script.calls if speaker(m) == "revision")[-1]["content"]
    assert "tool word_count(text) created" in revision


def test_brick_calls_a_registered_tool_through_the_schema_enum():
    workshop = RecordingWorkshop(tools=["word_count"])
    seen_formats = []
    script = Script(["aligned", "aligned"])

    def responder(model, messages, fmt):
        if fmt is not None and "needs_tool" in fmt["properties"]:
            seen_formats.append(fmt)
            calls = len(workshop.called) == 0
            return json.dumps({"needs_tool": False, "tool_spec": "",
                               "call_tool": "word_count" if calls else "", "arguments": {"text": "a b c d"}})
        return script(model, messages, fmt)

    with OllamaStandIn(models=MODELS, responder=responder) as server:
        graph, _ = build(server.host, EventBus(), graph_config(convergence_threshold=0.5, max_turns=3),
                         workshop=workshop)
        final = graph.run("t5", "How many words in 'a b c d'?")
    assert seen_formats[0]["properties"]["call_tool"]["enum"] == ["", "word_count"]
    assert workshop.called == [("word_count", {"text": "a b c d"})]
    assert "word_count returned 4" in [d["text"] for d in final["dialogue"] if d["node"] == "tool_call"]


class ProgramWorkshop(RecordingWorkshop):
    """The real program runner in the real sandbox, behind the graph's Workshop interface."""

    def __init__(self, executor):
        super().__init__()
        self.executor, self.programs, self.checked = executor, [], []

    def compute(self, lines, *, cancel=None):
        self.programs.append(lines)
        return run_program(self.executor, lines, cancel=cancel)

    def check_code(self, lines, checks, *, cancel=None):
        self.checked.append(lines)
        return check_code(self.executor, lines, checks, cancel=cancel)


def run_with_sandbox(sandboxed, script, task_id, task):
    """One task through the graph, the script as the model and the real program runner as the workshop:
    (the workshop, the final state, the events)."""
    workshop, bus = ProgramWorkshop(sandboxed), EventBus()
    events = collect(bus)
    with OllamaStandIn(models=MODELS, responder=script) as server:
        graph, _ = build(server.host, bus, graph_config(convergence_threshold=0.5, max_turns=3), workshop=workshop)
        final = graph.run(task_id, task)
    workshop.requests = server.requests  # what reached the model, as Ollama would receive it
    return workshop, final, events


SEVENS = ["# how many times the digit 7 is written from 1 to 100", "count = 0", "for i in range(1, 101):",
          "    count += str(i).count('7')", "answer = count"]


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    settings = load_settings()
    settings.data_dir = str(tmp_path_factory.mktemp("graph-sandbox"))
    return build_executor(settings)


def test_a_number_that_takes_many_cases_is_computed_by_brick_in_the_sandbox_and_stands(sandboxed):
    """ALFRED reads the task as one number over many cases: BRICK writes a program (JSON lines) instead
    of working by hand, the sandbox runs it, and its number is the result. ROBIN still answers blind,
    but her different hand-worked number starts no vote; ALFRED writes the answer on from the program."""
    script = Script([], form="number", compute="from 1 to 100", program=SEVENS, results=[(21, None)])
    workshop, final, events = run_with_sandbox(sandboxed, script, "c1", "How many times is the digit 7 written from 1 to 100?")
    assert workshop.programs == [SEVENS] and script.thesis_count == 0  # no working by hand
    assert final["results"] == [{"turn": 1, "brick": 20, "robin": 21, "computed": True}]
    utterances = [e.payload for e in events if e.topic == "utterance"]
    assert [u["node"] for u in utterances] == ["alfred_plan", "brick", "robin", "alfred_synthesize"]
    shown = utterances[1]
    assert shown["text"].startswith("```python\n# how many times") and shown["text"].endswith("computed 20.")
    assert shown["data"] == {"result": 20, "computed": True}
    robin = [call for call in script.calls if call[-1]["content"].startswith(("ROBIN", "ROBIN's part"))]
    assert robin and not any("count(" in m["content"] for call in robin for m in call)  # she answered blind
    synthesis = next(m for m in script.calls if speaker(m) == "synthesis")
    assert synthesis[-2] == {"role": "assistant", "content": shown["text"]}  # written on from the program
    assert not any(m["content"] == "My own answer." for m in synthesis)
    assert "ROBIN reached 21 by hand, which is less reliable for this task. 20 is the result." in synthesis[-1]["content"]
    assert final["answer"] == "Final answer.\n\nAnswer: 20"


def test_three_different_hand_worked_numbers_are_settled_by_brick_s_program(sandboxed):
    """BRICK, ROBIN and ALFRED all reach different numbers: rather than a round of revision (which
    anchors on what it reads), BRICK computes the number with a program in the sandbox; its number
    settles the task and ALFRED writes the answer on from it."""
    script = Script([], form="number", program=SEVENS, results=[(24, 27)], own=[30])
    workshop, final, events = run_with_sandbox(sandboxed, script, "c3", "How many times is the digit 7 written from 1 to 100?")
    assert workshop.programs == [SEVENS] and script.thesis_count == 1  # no revision by hand
    assert final["results"][-1] == {"turn": 1, "brick": 20, "robin": 24, "computed": True}
    nodes = [e.payload["node"] for e in events if e.topic == "utterance"]
    assert nodes == ["alfred_plan", "brick", "robin", "alfred_check", "brick_compute", "alfred_synthesize"]
    program = next(e.payload for e in events if e.topic == "utterance" and e.payload["node"] == "brick_compute")
    assert program["data"] == {"result": 20, "computed": True} and program["text"].endswith("computed 20.")
    synthesis = next(m for m in script.calls if speaker(m) == "synthesis")
    assert synthesis[-2] == {"role": "assistant", "content": program["text"]}  # written on from the program
    assert final["answer"] == "Final answer.\n\nAnswer: 20"


def test_a_tie_break_program_that_fails_leaves_the_debate_to_go_on_by_hand(sandboxed):
    script = Script([], form="number", program=None, results=[(24, 27), (25, 25)], own=[30])
    _, final, _ = run_with_sandbox(sandboxed, script, "c4", "How many dollars does Ana pay?")
    assert script.thesis_count == 2 and not final["computed"]
    assert final["results"][-1] == {"turn": 2, "brick": 25, "robin": 25}
    assert final["answer"] == "Final answer.\n\nAnswer: 25"


@pytest.mark.parametrize("program", [["answer = 1 / 0"], ["total = 5"], None],
                         ids=["raises", "no-answer", "garbage-json"])
def test_a_program_that_gives_no_number_leaves_brick_to_work_it_out_by_hand(sandboxed, program, caplog):
    """A program that fails, and fails again when BRICK is shown why (graph.program_fixes = 1), or no
    program at all: BRICK works the number out by hand."""
    caplog.set_level(logging.INFO, logger="a4ps.graph.computing")
    script = Script([], form="number", compute="from 1 to 10", program=program, results=[(24, 24)])
    workshop, final, _ = run_with_sandbox(sandboxed, script, "c2", "What is the sum of the odd numbers from 1 to 10?")
    assert script.thesis_count == 1 and final["results"] == [{"turn": 1, "brick": 24, "robin": 24}]
    assert not final["computed"] and final["answer"] == "Final answer.\n\nAnswer: 24"
    assert "he works it out by hand" in caplog.text
    assert workshop.programs == ([] if program is None else [program, program])


def test_a_failed_program_is_shown_to_brick_with_why_and_his_mended_one_computes_the_number(sandboxed):
    """BRICK calls a helper he never defined: the sandbox's error goes back to him, continuing the same
    conversation, and the program he writes then computes the number that stands."""
    broken = ["# the sum of the odd numbers from 1 to 10", "answer = 0", "for i in range(1, 11):",
              "    if is_odd(i):", "        answer += i"]
    mended = ["# the sum of the odd numbers from 1 to 10", "def is_odd(n):", "    return n % 2 == 1", "answer = 0",
              "for i in range(1, 11):", "    if is_odd(i):", "        answer += i"]
    script = Script([], form="number", compute="from 1 to 10", program=broken, fixed=mended, results=[(24, None)])
    workshop, final, events = run_with_sandbox(sandboxed, script, "c5", "What is the sum of the odd numbers from 1 to 10?")
    assert workshop.programs == [broken, mended] and script.thesis_count == 0
    assert final["computed"] and final["results"] == [{"turn": 1, "brick": 25, "robin": 24, "computed": True}]
    fix_call = next(call for call in script.calls if call[-1]["content"].startswith("BRICK, in the sandbox"))
    assert "NameError" in fix_call[-1]["content"] and "is_odd" in fix_call[-1]["content"]
    assert fix_call[-2] == {"role": "assistant", "content": json.dumps({"lines": broken})}
    shown = next(e.payload for e in events if e.topic == "utterance" and e.payload["node"] == "brick")
    assert "def is_odd" in shown["text"] and shown["text"].endswith("computed 25.")
    assert final["answer"] == "Final answer.\n\nAnswer: 25"


@pytest.mark.parametrize("text, kept", [
    ("A complete answer must contain:\n- the function\n- the formula (C * 9/5) + 3",
     "A complete answer must contain:\n- the function"),
    ("It needs the function. It needs the formula (C * 9/5) + 3", "It needs the function."),
    ("It needs the formula (C * 9/5) + 3", "It needs the formula (C * 9/5) + 3"),
])
def test_a_reply_cut_off_keeps_its_complete_part(text, kept):
    assert complete_part(text) == kept


def test_a_plan_cut_off_by_its_token_limit_loses_its_unfinished_line():
    """Everyone reads ALFRED's plan and anchors on it: a line the token limit cut mid-way ("+ 3" for
    "+ 32") is dropped before it joins the conversation."""
    plan = "A complete answer must contain:\n- the function celsius_to_fahrenheit(c)\n- the formula (C * 9/5) + 32"

    class LongPlan(Script):
        def __call__(self, model, messages, fmt):
            answer = super().__call__(model, messages, fmt)
            return plan if fmt is None and speaker(messages) == "plan" else answer

    script, bus = LongPlan(["aligned"]), EventBus()
    events = collect(bus)
    with OllamaStandIn(models=MODELS, responder=script) as server:
        graph, _ = build(server.host, bus, graph_config(plan_tokens=len(plan) // 4 - 2))
        final = graph.run("p1", "Write a Python function celsius_to_fahrenheit(c).")
    kept = "A complete answer must contain:\n- the function celsius_to_fahrenheit(c)"
    assert final["plan"] == kept and final["transcript"][1] == {"role": "assistant", "content": kept}
    assert next(e.payload["text"] for e in events if e.topic == "utterance") == kept
    streamed = "".join(e.payload["text"] for e in events if e.topic == "token" and e.payload["node"] == "alfred_plan")
    assert streamed.startswith(kept) and "- the formula (C" in streamed  # what streamed is what the model wrote


def test_cancel_stops_mid_answer():
    bus = EventBus()
    with OllamaStandIn(models=MODELS, responder=Script(["opposed"] * 5)) as server:
        graph, protos = build(server.host, bus, graph_config(convergence_threshold=0.5, max_turns=5))
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
    config = graph_config(convergence_threshold=0.5, max_turns=2, thesis_tokens=120, synthesis_tokens=120,
                          tools=False)
    graph = SocraticGraph(voices, codex, config, bus)
    final = graph.run("e1", "Suggest a name for a grey cat.")
    models.unload()
    values = final["dissonance"]
    assert 1 <= final["turn"] <= 2 and len(values) == final["turn"]
    assert all(v in VERDICT_VALUES.values() for v in values)  # no embedder: the verdict alone
    if final["turn"] < 2:
        assert values[-1] <= 0.5
    high = [e for e in events if e.topic == "high_cognitive_dissonance"]
    assert bool(high) == (final["turn"] == 2 and all(v > 0.5 for v in values))
    assert final["answer"].strip()
    assert any(e.topic == "token" and e.payload["persona"] == "ROBIN" for e in events)
    calls = [e.payload for e in events if e.topic == "model_call"]
    assert calls and all(c["prompt_tokens"] > 0 for c in calls)
    assert sum(c["reused_prompt_tokens"] for c in calls[1:]) > 0  # the shared conversation is reused


IS_PRIME = ["def is_prime(n):", "    if n < 2:", "        return False",
            "    for d in range(2, int(math.sqrt(n)) + 1):", "        if n % d == 0:", "            return False",
            "    return True"]
FIZZ_LIST = ["def fizzbuzz(n):", "    return ['Fizz' if i % 3 == 0 else str(i) for i in range(1, n + 1)]"]
FIZZ = ["def fizzbuzz(n):", "    if n % 15 == 0:", "        return 'FizzBuzz'", "    if n % 3 == 0:",
        "        return 'Fizz'", "    if n % 5 == 0:", "        return 'Buzz'", "    return str(n)"]
FIZZ_CHECKS = ["fizzbuzz(3) == 'Fizz'", "fizzbuzz(10) == 'Buzz'", "fizzbuzz(15) == 'FizzBuzz'"]


def test_the_final_code_is_written_as_json_checked_in_the_sandbox_and_given_below_alfred_s_words(sandboxed):
    """A task that asks for code: ALFRED gives the final code as JSON with checks of his own; it is
    checked (the `import math` he dropped is added) and run on its checks in the sandbox; his few
    sentences on it stream, and the code follows with what the check found."""
    script = Script(["aligned"], form="code", code=[{"lines": IS_PRIME, "checks": ["is_prime(7) == True",
                                                                                 "is_prime(9) == False"]}])
    workshop, final, events = run_with_sandbox(sandboxed, script, "k1", "Write a Python function is_prime(n).")
    assert workshop.checked == [IS_PRIME]
    code = "\n".join(["import math", *IS_PRIME])
    assert final["answer"] == ("```python\n" + code + "\n```\nThe code passed its 2 checks in the sandbox.\n\n"
                               "This is how the code works.")
    asked = next(m for m in script.calls if m[-1]["content"].startswith("ALFRED's part: write the final code"))
    assert "Write a Python function is_prime(n)." in asked[-1]["content"]
    assert any("Analysis 1." in m["content"] for m in asked)  # written after the whole discussion
    explain = next(m for m in script.calls if speaker(m) == "code_answer")
    assert explain[:len(asked)] == asked and code in explain[-1]["content"]  # on from the code, cached
    assert [m["content"] for m in explain[len(asked):-1]] == [
        json.dumps({"lines": IS_PRIME}), load_codex().prompts.code_checks,
        json.dumps({"checks": ["is_prime(7) == True", "is_prime(9) == False"]})]
    assert not any(speaker(m) == "synthesis" for m in script.calls)
    last = [e.payload for e in events if e.topic == "utterance"][-1]
    assert last["node"] == "alfred_synthesize" and last["text"] == final["answer"]
    assert last["data"]["code_check"] == {"ok": True, "passed": 2, "checks": ["is_prime(7) == True", "is_prime(9) == False"],
                                          "failures": [], "repairs": ["added the missing `import math`"]}
    chats = [body for path, body in workshop.requests if path == "/api/chat"]
    penalties = {("lines" in json.dumps(b.get("format") or {}) or "checks" in json.dumps(b.get("format") or {})):
                 b["options"]["repeat_penalty"] for b in chats}
    assert penalties == {True: 1.05, False: 1.15}  # code gets only a light repeat penalty
    streamed = "".join(e.payload["text"] for e in events if e.topic == "token" and e.payload["node"] == "alfred_synthesize")
    assert streamed.startswith("```python\nimport math\n") and streamed.endswith("sandbox.\n\nThis is how the code works.")


def test_final_code_that_fails_a_check_is_shown_to_alfred_with_why_and_his_mended_code_is_given(sandboxed):
    script = Script(["aligned"], form="code", code=[{"lines": FIZZ_LIST, "checks": FIZZ_CHECKS},
                                                    {"lines": FIZZ, "checks": FIZZ_CHECKS}])
    workshop, final, _ = run_with_sandbox(sandboxed, script, "k2", "Write a Python function fizzbuzz(n).")
    assert workshop.checked == [FIZZ_LIST, FIZZ]
    mend = next(m for m in script.calls if m[-1]["content"].startswith("ALFRED, in the sandbox"))
    assert "fizzbuzz(3) returned ['1', '2', 'Fizz']" in mend[-1]["content"]
    assert json.loads(mend[-4]["content"])["lines"] == FIZZ_LIST  # continuing his own code and checks
    assert json.loads(mend[-2]["content"])["checks"] == FIZZ_CHECKS
    assert "\n".join(FIZZ) in final["answer"] and "passed its 3 checks" in final["answer"]


def test_final_code_that_still_fails_is_given_with_what_failed_and_garbage_falls_back_to_prose(sandboxed):
    script = Script(["aligned"], form="code", code=[{"lines": FIZZ_LIST, "checks": FIZZ_CHECKS},
                                                    {"lines": ["def fizzbuzz(n):", "    return (n"], "checks": FIZZ_CHECKS}])
    workshop, final, _ = run_with_sandbox(sandboxed, script, "k3", "Write a Python function fizzbuzz(n).")
    assert len(workshop.checked) == 2  # one mending (graph.code_fixes = 1), then the one that failed least
    assert "\n".join(FIZZ_LIST) in final["answer"]
    assert "Check 1 (`fizzbuzz(3) == 'Fizz'`) failed" in final["answer"]
    garbage = Script(["aligned"], form="code", code=[None])
    workshop, final, _ = run_with_sandbox(sandboxed, garbage, "k4", "Write a Python function fizzbuzz(n).")
    assert workshop.checked == [] and final["answer"] == "Final answer."
