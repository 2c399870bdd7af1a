"""The mind on the capable embedded default (Qwen2.5-Coder-1.5B): BRICK asks for a tool only when
computing answers the task, and ROBIN's dissonance rises for an off-topic reply. Few and focused:
each test is a handful of real model calls (about a minute in all on 2 cores)."""

from __future__ import annotations

import threading

import pytest

from a4ps.config import load_codex, load_settings
from a4ps.events import EventBus
from a4ps.graph import SocraticGraph, dissonance, schemas
from a4ps.graph.voice import Voices
from a4ps.memory import make_embedder
from a4ps.models import ModelError, ModelManager
from a4ps.models.embedded import EmbeddedProvider
from a4ps.protos import ProtoManager

pytestmark = pytest.mark.capable_model


@pytest.fixture(scope="module")
def society(tmp_path_factory):
    settings = load_settings()  # the project's default embedded model: the capable one
    settings.models.embedded.models_dir = settings.models.embedded.models_dir or str(tmp_path_factory.mktemp("models"))
    settings.graph.thesis_tokens = 160
    provider = EmbeddedProvider(settings.models.embedded)
    try:
        provider.load()
    except ModelError as exc:
        pytest.fail(f"the capable default model is not available: {exc}")
    models = ModelManager(provider, json_retries=2)
    embedder = make_embedder("minilm", None, "")
    models.set_embedder(lambda texts: embedder.embed(texts).tolist())
    codex = load_codex()
    protos = ProtoManager.from_codex(codex, "embedded")
    bus = EventBus()
    voices = Voices(models, protos, bus, settings.models.max_tokens, settings.models.repeat_penalty)
    graph = SocraticGraph(voices, codex, settings.graph, bus)
    yield graph, voices, settings
    provider.unload()


class Sandbox:
    """The graph's Workshop, as far as BRICK's program needs it: the real sandbox of the settings."""

    def __init__(self, settings):
        from a4ps.backend.compose import build_executor
        self.executor = build_executor(settings)

    def usable_tools(self):
        return []

    def compute(self, lines, *, cancel=None):
        from a4ps.forge.program import run_program
        return run_program(self.executor, lines, cancel=cancel)

    def check_code(self, lines, checks, *, cancel=None):
        from a4ps.forge.code_check import check_code
        return check_code(self.executor, lines, checks, cancel=cancel)


def brick_decision(graph: SocraticGraph, task: str) -> dict:
    """ALFRED plans, BRICK analyses: the state after BRICK's first turn."""
    state = {"task_id": "cap", "task": task, "turn": 0, "transcript": [], "dialogue": [], "tool_results": [],
             "dissonance": []}
    config = {"configurable": {"cancel": threading.Event()}}
    for node in (graph.alfred_plan, graph.brick):
        update = node(state, config)
        for key, value in update.items():
            state[key] = state.get(key, []) + value if key in ("transcript", "dialogue") else value
    return state


@pytest.mark.parametrize("task, wants_code", [
    ("A friend of mine is nervous about a job interview tomorrow. What three things should she do tonight?", False),
    ("What is the difference between a list and a tuple in Python?", False),
    pytest.param("What is the sum of all prime numbers below 2,000,000? I need the exact value.", True,
                 marks=pytest.mark.xfail(reason="measured: ALFRED quotes 'below 2,000,000' and BRICK is sent to a "
                                                "program; his first calls an is_prime he never defined, the one he "
                                                "mends tries every divisor of two million numbers and runs past "
                                                "the sandbox's 10 s, and his tool decision after working by hand "
                                                "says no", strict=False)),
])
def test_brick_reaches_for_code_only_when_computing_answers_the_task(society, tmp_path, task, wants_code):
    """Advice and facts get no program and no forge request; a sum over two million numbers gets one or
    the other: BRICK's program run in the sandbox (ALFRED's form says compute), or a tool to forge."""
    _, voices, settings = society
    settings = settings.model_copy(update={"data_dir": str(tmp_path)})
    graph = SocraticGraph(voices, load_codex(), settings.graph, EventBus(), workshop=Sandbox(settings))
    state = brick_decision(graph, task)
    reached = bool(state.get("computed")) or state["tool_request"] is not None
    assert reached is wants_code, (state.get("form"), state["dialogue"][-1]["text"][:300])


def test_off_topic_reply_is_more_dissonant_than_an_agreeing_one(society):
    """The same analysis, two replies by ROBIN: one agreeing on the task, one about something else."""
    _, voices, settings = society
    system = {"role": "system", "content": "You are BAT OS, a society of personas: BRICK analyses, ROBIN empathises."}
    task = "A pencil costs 3 cents more than an eraser. Together they cost 25 cents. What does the eraser cost?"
    analysis = ("Let the eraser cost e cents. Then the pencil costs e + 3, and e + (e + 3) = 25, so 2e = 22 and "
                "e = 11. The eraser costs 11 cents and the pencil 14 cents.")
    replies = {
        "agreeing": "Yes, that is right: 11 + 14 = 25 and the pencil is 3 cents dearer. The eraser costs 11 cents, "
                    "which answers exactly what was asked.",
        "off_topic": "My grandmother loved her garden. Every spring she planted roses and tulips, and we would sit "
                     "together in the evening listening to the birds. I miss her stories very much.",
    }
    values = {}
    for name, reply in replies.items():
        messages = [system, {"role": "user", "content": f"The person's task: {task}\n\nBRICK, work it out."},
                    {"role": "assistant", "content": analysis},
                    {"role": "user", "content": "ROBIN, answer BRICK from the side of the person who asked."},
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": load_codex().prompts.verdict}]
        verdict = voices.decide("ROBIN", messages, schemas.VERDICT, task_id="cap", node="robin", turn=1,
                                cancel=threading.Event())["verdict"]
        values[name] = dissonance.measure(verdict, analysis, reply, voices.embed,
                                          settings.graph.dissonance_embedding_weight)
    assert values["off_topic"].value > values["agreeing"].value, values
    assert values["agreeing"].value <= settings.graph.convergence_threshold, values


@pytest.mark.parametrize("task, computes, expected", [
    ("How many times is the digit 7 written when you write all the whole numbers from 1 to 100?", True, 20),
    pytest.param("What is the sum of all whole numbers from 1 to 200 that are divisible by 3 or by 5?", True, 9368,
                 marks=pytest.mark.xfail(reason="measured: ALFRED's form misses this one after some sampled plans "
                                                "(the routing is a known weak point)", strict=False)),
    ("A bat and a ball cost 1.10 dollars in total. The bat costs 1.00 dollar more than the ball. "
     "How many cents does the ball cost?", False, None),
    ("A pipe fills a tank in 6 hours and a drain empties the full tank in 10 hours. If both are open and "
     "the tank starts empty, how many hours does it take to fill?", False, None),
])
def test_a_number_over_a_named_range_is_computed_by_a_program_in_the_sandbox(society, tmp_path, task, computes,
                                                                          expected):
    """ALFRED's form routes only a task that names a range of many numbers to a program; BRICK's program,
    run in the real sandbox, computes a number (a wrong one is reported as an expected failure: how often
    the programs are right is measured by bench_quality.py, and a 1.5B model's program can carry a bug)."""
    graph, voices, settings = society
    settings = settings.model_copy(update={"data_dir": str(tmp_path)})
    computing = SocraticGraph(voices, load_codex(), settings.graph, EventBus(), workshop=Sandbox(settings))
    state = {"task_id": "cap", "task": task, "turn": 0, "transcript": [], "dialogue": []}
    config = {"configurable": {"cancel": threading.Event()}}
    state.update(computing.alfred_plan(state, config))
    assert state["form"]["compute"] is computes, state["form"]
    if computes:
        update = computing.brick(state, config)
        assert update["computed"], update["dialogue"][0]["text"]
        if update["brick_result"] != expected:
            pytest.xfail(f"the program computed {update['brick_result']}, not {expected}: {update['dialogue'][0]['text']}")


@pytest.mark.xfail(reason="measured once (12:29, 2026-12-03): with only the plan before him (no BRICK or ROBIN), "
                          "ALFRED's gcd returned 1; his checks caught it, the mending did not fix it, and the "
                          "answer said so", strict=False)
def test_the_final_code_of_a_code_task_is_checked_in_the_sandbox_and_passes_hidden_cases(society, tmp_path):
    """A task that asks for code: ALFRED's final code comes as JSON lines (whole lines, under the JSON
    grammar's line breaks), then his checks, run in the real sandbox; the code given passes cases he
    never saw, and his words below it hold no code block."""
    from a4ps.forge.code_check import check_code

    graph, voices, settings = society
    settings = settings.model_copy(update={"data_dir": str(tmp_path)})
    workshop = Sandbox(settings)
    coding = SocraticGraph(voices, load_codex(), settings.graph, EventBus(), workshop=workshop)
    task = "Write a Python function gcd(a, b) that returns the greatest common divisor of two positive integers."
    state = {"task_id": "cap-code", "task": task, "turn": 0, "transcript": [], "dialogue": []}
    config = {"configurable": {"cancel": threading.Event()}}
    state.update(coding.alfred_plan(state, config))
    assert state["form"]["form"] == "code", state["form"]
    answer = coding.alfred_synthesize(state, config)["answer"]
    assert "```\nThe code passed its" in answer, answer  # what its own checks found, under the code
    code = answer.split("```python\n", 1)[1].split("\n```", 1)[0]
    hidden = check_code(workshop.executor, code.splitlines(), ["gcd(12, 18) == 6", "gcd(7, 13) == 1", "gcd(100, 75) == 25"])
    assert hidden.ok, hidden.summary
    assert answer.count("```") == 2, answer  # the code block only
