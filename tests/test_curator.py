"""The Curator (organ 8): ALFRED's verdicts, golden samples, the user's ratings, and the files that hold them.

The rules are tested in this process on the real parts (LanceDB memory with the MiniLM embedder, the
model layer, the task queue, the bus) with the verdicts scripted through the Ollama stand-in, as the
cadence and autonomy tests script their decisions: a threshold or an override is only testable on a
verdict that is known. The wiring (commands, events, snapshot, loop health, CLI) runs against a real
backend process on the embedded SmolLM2, which judges a real dialogue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from a4ps.backend.compose import build_curator, build_memory, build_models
from a4ps.backend.tasks import DONE, TaskQueue
from a4ps.config import load_codex, load_settings
from a4ps.config.schema import ANALYST, EMPATH, STEWARD
from a4ps.config.loader import project_root
from a4ps.curator.curator import RatingError
from a4ps.curator.golden import GoldenSet, file_name
from a4ps.curator.ledger import CurationLedger
from a4ps.curator.lines import append_lines, read_lines
from a4ps.events import EventBus
from a4ps.graph.voice import Voices
from a4ps.protos import ProtoManager
from tests.support.backend import BackendProcess
from tests.support.config import write_config
from tests.support.ollama_standin import OllamaStandIn
from tests.support.society_script import MODELS

GOOD = {"logical_rigour": 5, "fit_to_person": 4, "task_efficacy": 5, "overall": 0.9, "driver": ANALYST,
        "why": "He added the numbers step by step and checked the sum."}
POOR = {**GOOD, "logical_rigour": 2, "task_efficacy": 2, "overall": 0.3, "driver": EMPATH,
        "why": "She asked what the person needed, but the answer stayed vague."}


class Verdicts:
    """The stand-in's responder: each verdict asked for gets the next scripted answer (a dict is sent as
    JSON, a string as written: garbage); the last one repeats."""

    def __init__(self, *answers):
        self.answers, self.asked = list(answers), 0
        self._lock = threading.Lock()

    def __call__(self, model, messages, fmt) -> str:
        assert isinstance(fmt, dict) and "overall" in fmt["properties"], "only verdicts are asked here"
        with self._lock:
            self.asked += 1
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer if isinstance(answer, str) else json.dumps(answer)


class Society:
    """The Curator's real collaborators in this process; `curator()` builds a fresh one over the same
    files, as a restarted backend does."""

    def __init__(self, tmp_path, host: str, **settings):
        config = write_config(tmp_path / "config", settings={
            "models.provider": "ollama", "models.ollama.host": host, "memory.embedder": "minilm",
            "autopoiesis.curation_threshold": 0.75, **settings})
        self.settings = load_settings(config / "settings.toml")
        self.settings.data_dir = str(tmp_path / "data")
        self.codex = load_codex(config / "codex.toml")
        self.models = build_models(self.settings, self.codex)
        self.protos = ProtoManager.from_codex(self.codex, self.models.provider_name)
        self.bus = EventBus()
        self.events: list = []
        self.bus.subscribe("*", self.events.append)
        self.voices = Voices(self.models, self.protos, self.bus, self.settings.models.max_tokens)
        self.memory = build_memory(self.settings, self.models)
        self.tasks = TaskQueue()
        self.tasks.set_listener(lambda task: self.bus.publish("task", **task.as_map()))
        self.stop = threading.Event()
        self.golden_dir = tmp_path / "data" / "golden"

    def curator(self):
        return build_curator(self.settings, self.codex, self.models, self.protos, self.voices, self.memory,
                             self.tasks, self.bus, self.stop)

    def finished_task(self, text: str, brick: str, robin: str, answer: str) -> tuple[str, str]:
        """A task done through the queue and remembered as the backend does; (task id, episode id)."""
        task, _ = self.tasks.submit(text)
        self.tasks.finish(self.tasks.take(1.0), DONE, result=answer)
        episode = self.memory.remember_task(task.task_id, text, answer, "Say the sum.", [
            {"persona": ANALYST, "node": "brick", "turn": 1, "text": brick},
            {"persona": EMPATH, "node": "robin", "turn": 1, "text": robin},
            {"persona": ANALYST, "node": "tool_call", "turn": 1, "text": "add(2, 3) returned 5"},
            {"persona": STEWARD, "node": "alfred_synthesize", "turn": 1, "text": answer}])
        return task.task_id, episode

    def golden(self, persona: str) -> list[dict]:
        read = read_lines(self.golden_dir / file_name(persona))
        assert not read.torn_tail and not read.bad_lines
        return read.records

    def published(self, topic: str) -> list[dict]:
        return [e.payload for e in self.events if e.topic == topic]

    def close(self) -> None:
        self.memory.close()


@pytest.fixture
def society(tmp_path):
    made = []

    def make(responder, **settings):
        server = OllamaStandIn(models=MODELS, responder=responder).__enter__()
        made.append(server)
        society = Society(tmp_path / f"society{len(made)}", server.host, **settings)
        made.append(society)
        return society

    yield make
    for thing in reversed(made):
        thing.close() if isinstance(thing, Society) else thing.__exit__(None, None, None)


def test_an_episode_is_judged_once_and_golden_at_the_threshold_also_after_a_restart(society):
    verdicts = Verdicts(GOOD, POOR, {**GOOD, "overall": 0.75})
    s = society(verdicts)
    good_task, good_episode = s.finished_task("What is 2 + 3?", "2 + 3 = 5. Result: 5", "I get 5 too.", "It is 5.")
    poor_task, _ = s.finished_task("How do I calm down?", "Breathe slowly.", "Take a walk, maybe.", "Breathe.")
    edge_task, _ = s.finished_task("What is 4 + 4?", "4 + 4 = 8. Result: 8", "Eight.", "It is 8.")
    curator = s.curator()
    first = curator.run_pass("p1", "request")
    assert (first["judged"], first["golden"], first["failed"]) == (3, 2, 0), first
    assert verdicts.asked == 3
    brick = s.golden(ANALYST)
    assert [line["provenance"]["task_id"] for line in brick] == [good_task, edge_task], "oldest first; 0.75 is golden"
    assert not (s.golden_dir / file_name(EMPATH)).exists(), "ROBIN drove only the poor one"
    line = brick[0]
    system, user, assistant = line["messages"]
    assert system == {"role": "system", "content": s.codex.persona_named(ANALYST).system_prompt}
    assert user == {"role": "user", "content": "What is 2 + 3?"}
    assert assistant == {"role": "assistant", "content": "2 + 3 = 5. Result: 5"}, "his own turn, no tool outcome"
    provenance = line["provenance"]
    assert provenance["episode_id"] == good_episode and provenance["persona"] == ANALYST
    assert provenance["scores"] == {"logical_rigour": 5, "fit_to_person": 4, "task_efficacy": 5, "overall": 0.9}
    assert provenance["judge_model"] == "ollama:" + s.codex.persona_named(STEWARD).models["ollama"]
    assert provenance["codex_version"] == s.codex.version and provenance["driver_why"] == GOOD["why"]
    assert provenance["judged_at"] <= provenance["added_at"] <= time.time()
    assert "threshold 0.75" in provenance["reason"]
    assert s.published("curated")[-1]["judged"] == 3 and s.published("curated")[-1]["total_golden"] == 2

    again = curator.run_pass("p2", "interval")
    assert (again["judged"], verdicts.asked) == (0, 3), "nothing is judged twice"
    restarted = s.curator()
    assert restarted.run_pass("p3", "interval")["judged"] == 0 and verdicts.asked == 3
    assert len(s.golden(ANALYST)) == 2, "no line added twice"
    stats = restarted.stats()
    assert stats["judged"] == 3 and stats["golden"] == 2 and stats["personas"][EMPATH]["judged"] == 1
    assert poor_task not in {line["provenance"]["task_id"] for line in s.golden(ANALYST)}


def test_ratings_override_the_judge_both_ways_and_its_agreement_is_counted(society):
    s = society(Verdicts(GOOD, GOOD, POOR, {**POOR, "driver": ANALYST}))
    down_first, _ = s.finished_task("What is 7 * 6?", "7 * 6 = 42.", "42.", "It is 42.")       # judged 0.9
    up_first, _ = s.finished_task("Name a fruit.", "Apple.", "A ripe pear.", "A pear.")       # judged 0.9
    up_later, _ = s.finished_task("How far is the moon?", "Far.", "Very far away.", "Far.")  # judged 0.3 (ROBIN)
    down_later, _ = s.finished_task("What is 9 - 4?", "9 - 4 = 5.", "Five.", "It is 5.")       # judged 0.3 (BRICK)
    curator = s.curator()
    curator.rate(down_first, "down")
    assert curator.rate(up_first, "up") == {"task_id": up_first, "rating": "up", "judged": False,
                                            "golden": False, "change": None}
    result = curator.run_pass("p1", "request")
    assert (result["judged"], result["golden"]) == (4, 1), "down-rated 0.9 is not golden; up-rated 0.9 is"
    assert [l["provenance"]["task_id"] for l in s.golden(ANALYST)] == [up_first]
    assert s.golden(ANALYST)[0]["provenance"]["reason"] == "rated up by the user"

    added = curator.rate(up_later, "up")
    assert added["judged"] and added["golden"] and added["change"] == "added", "judged below, added when rated up"
    assert [l["provenance"]["task_id"] for l in s.golden(EMPATH)] == [up_later]
    assert s.golden(EMPATH)[0]["messages"][2]["content"] == "Very far away."
    assert curator.rate(down_later, "down")["change"] is None, "below the threshold and down: nothing to remove"
    removed = curator.rate(up_first, "down")
    assert removed["change"] == "removed" and not removed["golden"], "a golden one rated down leaves the dataset"
    assert s.golden(ANALYST) == []
    assert curator.rate(up_first, "up")["change"] == "added"
    assert [e["rating"] for e in s.published("task_rated")] == ["down", "up", "up", "down", "down", "up"]

    # The judge passed down_first (0.9, rated down): disagrees; up_first (0.9, up): agrees; up_later
    # (0.3, up): disagrees; down_later (0.3, down): agrees.
    stats = curator.stats()
    assert stats["agreement"] == {"compared": 4, "agreed": 2, "rate": 0.5}
    assert stats["rated"] == {"up": 2, "down": 2}
    assert stats["personas"][ANALYST]["compared"] == 3 and stats["personas"][ANALYST]["agreed"] == 2
    assert stats["personas"][EMPATH] == {"judged": 1, "golden": 1, "compared": 1, "agreed": 0, "agreement": 0.0}
    restarted = s.curator()
    assert restarted.stats() == stats, "ratings and judgements survive a restart"
    assert restarted.snapshot()["ratings"][down_first] == "down"


def test_bad_ratings_are_refused_with_a_reason_and_change_nothing(society):
    s = society(Verdicts(GOOD))
    done_task, _ = s.finished_task("What is 1 + 1?", "1 + 1 = 2.", "Two.", "It is 2.")
    waiting, _ = s.tasks.submit("Still waiting.")
    curator = s.curator()
    with pytest.raises(RatingError) as refused:
        curator.rate("nosuchtask", "up")
    assert refused.value.code == "not_found"
    with pytest.raises(RatingError) as refused:
        curator.rate(waiting.task_id, "up")
    assert refused.value.code == "not_rateable" and "queued" in str(refused.value)
    with pytest.raises(RatingError) as refused:
        curator.rate(done_task, "sideways")
    assert refused.value.code == "invalid_value"
    assert curator.stats()["rated"] == {"up": 0, "down": 0} and s.published("task_rated") == []


def test_a_garbage_verdict_is_asked_again_and_one_that_stays_invalid_loses_nothing(society):
    verdicts = Verdicts("The dialogue was fine, I would say.", {**GOOD, "logical_rigour": 9}, GOOD)
    s = society(verdicts, **{"models.json_retries": 2})
    task_id, _ = s.finished_task("What is 3 + 3?", "3 + 3 = 6.", "Six.", "It is 6.")
    curator = s.curator()
    result = curator.run_pass("p1", "request")
    assert (result["judged"], result["golden"], verdicts.asked) == (1, 1, 3), "two invalid answers, asked again"

    verdicts = Verdicts("not json at all")
    s2 = society(verdicts, **{"models.json_retries": 1})
    task_id, episode_id = s2.finished_task("What is 5 + 5?", "5 + 5 = 10.", "Ten.", "It is 10.")
    curator = s2.curator()
    failed = curator.run_pass("p1", "request")
    assert (failed["judged"], failed["failed"], verdicts.asked) == (0, 1, 2)
    assert "no valid answer" in failed["errors"][0] and episode_id in failed["errors"][0]
    assert not s2.golden_dir.exists() or not any(s2.golden_dir.iterdir()), "nothing written of a bad verdict"
    verdicts.answers = [GOOD]
    later = s2.curator().run_pass("p2", "interval")
    assert (later["judged"], later["golden"]) == (1, 1), "the episode was kept for the next pass"
    assert s2.golden(ANALYST)[0]["provenance"]["task_id"] == task_id


def test_an_episode_that_never_gets_a_valid_verdict_is_given_up_after_three_passes(society):
    verdicts = Verdicts("garbage")
    s = society(verdicts, **{"models.json_retries": 0})
    s.finished_task("What is 6 + 1?", "7.", "Seven.", "It is 7.")
    curator = s.curator()
    for number in range(3):
        assert curator.run_pass(f"p{number}", "interval")["failed"] == 1
    assert curator.run_pass("p4", "interval")["failed"] == 0 and verdicts.asked == 3
    assert curator.stats()["unjudgeable"] == 1


def test_a_person_s_task_comes_first_and_the_verdict_it_interrupted_is_asked_again(society):
    """While ALFRED writes a verdict (the stand-in holds it), a person's task is queued: the verdict is
    dropped, the pass waits until the queue is idle, then asks again; nothing is judged twice."""
    holding, release = threading.Event(), threading.Event()
    inner = Verdicts(GOOD)

    def responder(model, messages, fmt):
        if inner.asked == 0:
            holding.set()
            release.wait(30)
        return inner(model, messages, fmt)

    s = society(responder)
    s.finished_task("What is 2 + 2?", "2 + 2 = 4.", "Four.", "It is 4.")
    curator = s.curator()
    s.bus.subscribe("task", curator.on_event)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(curator.run_pass("p1", "request")))
    worker.start()
    assert holding.wait(30)
    person, _ = s.tasks.submit("A person's task.")
    release.set()
    time.sleep(1.5)
    assert worker.is_alive() and not s.published("curated"), "the pass waits while the person's task waits"
    s.tasks.finish(s.tasks.take(1.0), DONE, result="done")
    worker.join(30)
    assert outcome["judged"] == 1 and inner.asked == 2 and len(s.golden(ANALYST)) == 1


def test_the_loop_runs_a_requested_pass_at_once_a_periodic_one_when_due_and_none_while_work_waits(society):
    from a4ps.curator.curator import Curator
    from a4ps.curator.judge import EpisodeJudge

    s = society(Verdicts(GOOD), **{"autopoiesis.curate_interval_s": 600.0})
    now = [1000.0]

    def build(config):
        return Curator(config, s.codex, CurationLedger(s.golden_dir.parent / "curator"), GoldenSet(s.golden_dir),
                       EpisodeJudge(s.voices, s.codex, lambda: "scripted"), lambda n: s.memory.recent_episodes(limit=n),
                       lambda task_id: None, lambda: s.tasks.idle, s.bus, s.stop, clock=lambda: now[0])

    curator = build(s.settings.autopoiesis)
    s.finished_task("What is 1 + 2?", "1 + 2 = 3.", "Three.", "It is 3.")
    curator.step()
    assert s.published("curated") == [] and curator.next_due() == 1600.0, "not due before the interval"
    waiting, _ = s.tasks.submit("A person's task.")
    pass_id = curator.request_pass()
    assert curator.request_pass() == pass_id, "asking twice before it starts is one pass"
    curator.step()
    assert s.published("curated") == [] and curator.snapshot()["requested"] == pass_id, "work waits: no pass yet"
    s.tasks.finish(s.tasks.take(1.0), DONE, result="done")
    curator.step()
    ran = s.published("curated")
    assert [(e["pass_id"], e["trigger"], e["judged"]) for e in ran] == [(pass_id, "request", 1)]
    assert curator.snapshot()["last_run"]["pass_id"] == pass_id and curator.snapshot()["requested"] is None
    now[0] += 599.0
    curator.step()
    assert len(s.published("curated")) == 1
    now[0] += 2.0
    curator.step()
    assert [e["trigger"] for e in s.published("curated")] == ["request", "interval"]
    off = build(s.settings.autopoiesis.model_copy(update={"enabled": False}))
    now[0] += 10_000.0
    off.step()
    assert len(s.published("curated")) == 2 and off.next_due() is None, "disabled: no periodic pass"
    off.request_pass()
    off.step()
    assert [e["trigger"] for e in s.published("curated")] == ["request", "interval", "request"], "curate still runs"


def test_curate_without_a_backend_says_so_plainly(tmp_path):
    from tests.support.config import free_port

    env = {**os.environ, "A4PS_DATA_DIR": str(tmp_path / "data"), "A4PS_REP_ADDR": f"tcp://127.0.0.1:{free_port()}",
           "A4PS_PUB_ADDR": f"tcp://127.0.0.1:{free_port()}"}
    result = a4ps("curate", env=env)
    assert result.returncode == 1 and "is the backend running?" in result.stderr and "Traceback" not in result.stderr
    stats = a4ps("curator", "stats", env=env)
    assert stats.returncode == 0 and stats.stdout.startswith("judged 0, golden 0"), "stats need no backend"


def test_a_torn_last_line_is_skipped_reported_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "golden" / "BRICK.jsonl"
    append_lines(path, [{"n": 1}, {"n": 2, "text": "line\nbreak \u2028 and ü"}])
    with open(path, "ab") as handle:
        handle.write(b'{"n": 3, "messages": [{"role": "us')  # a kill in the middle of an append
    read = read_lines(path)
    assert [r["n"] for r in read.records] == [1, 2] and read.torn_tail and read.bad_lines == 0
    assert read.records[1]["text"] == "line\nbreak \u2028 and ü"
    append_lines(path, [{"n": 4}])
    read = read_lines(path)
    assert [r["n"] for r in read.records] == [1, 2, 4] and not read.torn_tail, "the torn tail was cut first"
    assert path.read_bytes().count(b"\n") == 3

    with open(path, "ab") as handle:
        handle.write(b'{"messages": [], "provenance": {"episode_id": "e9", "pers')
    golden = GoldenSet(path.parent)
    assert golden.torn_lines == 1 and golden.counts() == {}
    assert golden.add("BRICK", {"messages": []}, {"episode_id": "e1"}) is True
    assert golden.add("BRICK", {"messages": []}, {"episode_id": "e1"}) is False, "an episode is held once"
    assert [r.get("n") for r in read_lines(path).records] == [1, 2, 4, None]
    assert golden.remove("e1") and not golden.remove("e1")
    assert [r.get("n") for r in read_lines(path).records] == [1, 2, 4]


def test_a_crash_between_the_rating_and_the_golden_file_is_repaired_at_start(society):
    """The rating is written first, the golden file second: a kill between them leaves a golden line the
    user rated down; the next start makes the files agree with the ratings again."""
    s = society(Verdicts(GOOD))
    task_id, episode_id = s.finished_task("What is 8 + 1?", "8 + 1 = 9.", "Nine.", "It is 9.")
    s.curator().run_pass("p1", "request")
    assert len(s.golden(ANALYST)) == 1
    CurationLedger(s.golden_dir.parent / "curator").rate(task_id, "down")  # the rating alone reached the disk
    assert len(s.golden(ANALYST)) == 1
    s.curator()
    assert s.golden(ANALYST) == []


def a4ps(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "a4ps", *args], cwd=project_root(), env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.timeout(900)
def test_the_backend_curates_a_real_dialogue_with_the_embedded_model_and_takes_ratings(tmp_path):
    """SmolLM2 judges a remembered dialogue (a valid verdict, whatever its grade; with threshold 0 it is
    golden). Ratings, bad input, the loop's health, the snapshot and the CLI, on a real backend. The
    dialogue is put into H-MEM before the start, as a finished task leaves it: a whole Socratic task on
    this shared 2-core machine takes minutes, the verdict is what is tested here."""
    from a4ps.memory import open_memory

    config = write_config(tmp_path / "config", settings={
        "graph.max_turns": 1, "autonomy.enabled": False, "autopoiesis.curation_threshold": 0.0,
        "autopoiesis.curate_interval_s": 3600.0})
    data = tmp_path / "data"
    settings = load_settings(config / "settings.toml")
    settings.data_dir = str(data)
    memory = open_memory(data, settings.memory)
    task_id, task_text = "a1b2c3d4e5f6", "What is 12 + 30? Answer with the number."
    memory.remember_task(task_id, task_text, "12 + 30 is 42.", "Give the sum as one number.", [
        {"persona": ANALYST, "node": "brick", "turn": 1, "text": "12 + 30 = 42. Result: 42"},
        {"persona": EMPATH, "node": "robin", "turn": 1, "text": "I add 12 and 30 and get 42, the same as BRICK."},
        {"persona": STEWARD, "node": "alfred_synthesize", "turn": 1, "text": "12 + 30 is 42."}])
    memory.close()
    with BackendProcess(data, config) as backend:
        loops = {loop["name"]: loop for loop in backend.request("ping")["loops"]}
        assert loops["curator"]["state"] == "running" and loops["curator"]["restarts"] == 0
        assert backend.request("rate_task", task_id=task_id, rating="up", token="wrong")["code"] == "unauthorized"
        for bad, code in (({"rating": "up"}, "bad_request"), ({"task_id": task_id, "rating": "meh"}, "invalid_value"),
                          ({"task_id": task_id, "rating": 1}, "invalid_value"),
                          ({"task_id": "../x", "rating": "up"}, "invalid_value"),
                          ({"task_id": "abc123", "rating": "up"}, "not_found")):
            reply = backend.request("rate_task", **bad)
            assert not reply["ok"] and reply["code"] == code, (bad, reply)

        curate = a4ps("curate", "--timeout", "600", env=backend.env)
        assert curate.returncode == 0, (curate.stdout, curate.stderr, backend.output()[-3000:])
        assert curate.stdout.startswith("1 episode(s) judged, 1 became golden"), curate.stdout
        state = backend.request("get_state")["state"]["curator"]
        assert state["judged"] == 1 and state["golden"] == 1 and state["last_run"]["trigger"] == "request"
        persona = next(name for name in (ANALYST, EMPATH) if (data / "golden" / file_name(name)).exists())
        lines = read_lines(data / "golden" / file_name(persona))
        assert not lines.torn_tail and len(lines.records) == 1
        line = lines.records[0]
        assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant"]
        assert line["messages"][1]["content"] == task_text
        assert line["messages"][2]["content"] in ("12 + 30 = 42. Result: 42",
                                                  "I add 12 and 30 and get 42, the same as BRICK."), "its own turn"
        provenance = line["provenance"]
        assert provenance["task_id"] == task_id and provenance["judge_model"].startswith("embedded:SmolLM2")
        assert set(provenance["scores"]) == {"logical_rigour", "fit_to_person", "task_efficacy", "overall"}
        assert all(1 <= provenance["scores"][k] <= 5 for k in ("logical_rigour", "fit_to_person", "task_efficacy"))
        assert 0.0 <= provenance["scores"]["overall"] <= 1.0

        rated = a4ps("rate", task_id, "down", env=backend.env)
        assert rated.returncode == 0 and "not golden (its golden line was removed)" in rated.stdout, rated.stdout
        assert read_lines(data / "golden" / file_name(persona)).records == []
        rated = a4ps("rate", task_id, "up", env=backend.env)
        assert rated.returncode == 0 and "golden (its golden line was added)" in rated.stdout, rated.stdout
        assert backend.request("get_state")["state"]["curator"]["ratings"] == {task_id: "up"}
        assert a4ps("rate", task_id, "sideways", env=backend.env).returncode == 2
        missing = a4ps("rate", "feedface", "up", env=backend.env)
        assert missing.returncode == 1 and "not_found: no task 'feedface'" in missing.stderr
        loops = {loop["name"]: loop for loop in backend.request("ping")["loops"]}
        assert loops["curator"]["state"] == "running" and loops["curator"]["restarts"] == 0

    stats = a4ps("curator", "stats", "--json", env={**os.environ, "A4PS_DATA_DIR": str(data),
                                                      "A4PS_CONFIG_DIR": str(config)})
    figures = json.loads(stats.stdout)
    assert figures["judged"] == 1 and figures["golden"] == 1 and figures["rated"] == {"up": 1, "down": 0}
    assert figures["agreement"] == {"compared": 1, "agreed": 1, "rate": 1.0}, "threshold 0: the judge said golden"
    text = a4ps("curator", "stats", env={**os.environ, "A4PS_DATA_DIR": str(data), "A4PS_CONFIG_DIR": str(config)})
    assert "judged 1, golden 1" in text.stdout and "agrees with you on 1 of 1 rated (100%)" in text.stdout
