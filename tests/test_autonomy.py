"""The Motivator against a real backend process: idle goals, repeats refused, budget, pause across a
restart, the priority queue, and a goal written by the real embedded model."""

from __future__ import annotations

import time

import pytest

from a4ps.backend.tasks import SELF_SET, USER, TaskQueue
from tests.support.backend import BackendProcess, wait_for_task
from tests.support.config import write_config
from tests.support.ollama_standin import OllamaStandIn
from tests.support.society_script import MODELS, SocietyScript


def autonomy_settings(**overrides):
    return {"graph.max_turns": 1, "autonomy.idle_after_s": 1.0, "autonomy.max_goals_per_hour": 2,
            **overrides}


def collect(events, topic: str, timeout_s: float, count: int = 1) -> list[dict]:
    """Events of `topic` until `count` arrived or the time is up."""
    found, deadline = [], time.monotonic() + timeout_s
    while len(found) < count and (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == topic:
            found.append(item[1])
    return found


def test_a_user_task_runs_before_a_waiting_self_set_one_and_one_self_set_waits_at_most():
    queue = TaskQueue()
    goal = queue.submit_self_set("Explore sorting.", "motivator")
    assert goal is not None and goal.priority == SELF_SET
    assert queue.submit_self_set("Another goal.", "motivator") is None, "only one self-set task may wait"
    first_user, position = queue.submit("The user's task.")
    assert first_user.priority == USER and position == 1, "the user's task is next, ahead of the goal"
    second_user, position = queue.submit("The user's second task.")
    assert position == 2
    order = []
    for _ in range(3):
        task = queue.take(0.1)
        order.append(task.text)
        assert queue.take(0.01) is None, "nothing else starts while one runs"
        queue.finish(task, "done")
    assert order == ["The user's task.", "The user's second task.", "Explore sorting."]
    assert queue.submit_self_set("Now another goal may wait.", "motivator") is not None


def test_idle_goals_are_written_a_repeat_is_refused_and_the_hourly_budget_holds(tmp_path):
    script = SocietyScript()
    first = {"kind": "task", "goal": "Compare two ways to sort a list of words.", "why": "Sorting came up.",
             "builds_on": "nothing yet"}
    second = {"kind": "task", "goal": "Write a short checklist for planning a trip.", "why": "Plans help.",
              "builds_on": "a trip task"}
    script.push("goal", first, first, second)
    config = write_config(tmp_path / "config", settings=autonomy_settings())
    with OllamaStandIn(models=MODELS, responder=script) as server:
        with BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            events = backend.subscribe()
            goals = collect(events, "goal", 60, count=2)
            assert [g["goal"] for g in goals] == [first["goal"], second["goal"]], "the repeat was refused"
            assert goals[0]["trigger"] == "idle" and goals[0]["why"] == "Sorting came up."
            assert [g["kind"] for g in goals] == ["task", "task"]
            assert script.asked["goal"] == 3, "the repeated goal was asked for again"
            state = backend.request("get_state")["state"]
            tasks = {t["task_id"]: t for t in state["tasks"]}
            assert tasks[goals[0]["task_id"]]["source"] == "motivator"
            assert tasks[goals[0]["task_id"]]["details"]["why"] == "Sorting came up."
            wait_for_task(events, goals[1]["task_id"], {"done"}, 60)
            assert collect(events, "goal", 4) == [], "no third goal within the hour (budget 2)"
            autonomy = backend.request("get_state")["state"]["autonomy"]
            assert autonomy["state"] == "running" and autonomy["goals_this_hour"] == 2 and autonomy["budget"] == 2
            assert script.asked["goal"] == 3
            events.close()
    assert "repeats 'Compare two ways to sort a list of words.'" in backend.output()


def test_pause_stops_goals_and_survives_a_restart(tmp_path):
    script = SocietyScript()
    config = write_config(tmp_path / "config", settings=autonomy_settings(**{"autonomy.idle_after_s": 2.0}))
    data = tmp_path / "data"
    with OllamaStandIn(models=MODELS, responder=script) as server:
        env = {"OLLAMA_HOST": server.host}
        with BackendProcess(data, config, extra_env=env) as backend:
            denied = backend.request("set_autonomy", state="paused", token="wrong")
            assert denied["code"] == "unauthorized"
            assert backend.request("set_autonomy", state="sleeping")["code"] == "invalid_value"
            events = backend.subscribe()
            reply = backend.request("set_autonomy", state="paused")
            assert reply["ok"] and reply["autonomy"]["state"] == "paused"
            assert reply["autonomy"]["reason"] == "paused by the user"
            event = collect(events, "autonomy", 5)
            assert event and event[0]["state"] == "paused"
            assert collect(events, "goal", 5) == [] and script.asked["goal"] == 0
            events.close()
        with BackendProcess(data, config, extra_env=env) as backend:
            autonomy = backend.request("get_state")["state"]["autonomy"]
            assert autonomy["state"] == "paused" and autonomy["reason"] == "paused by the user"
            events = backend.subscribe()
            assert collect(events, "goal", 4) == []
            assert backend.request("set_autonomy", state="running")["autonomy"]["state"] == "running"
            goal = collect(events, "goal", 30)
            assert goal and goal[0]["trigger"] == "idle"
            events.close()


def test_a_person_submitting_stops_the_goal_being_written(tmp_path):
    """While ALFRED writes a goal (the stand-in holds the answer), a user's task arrives: the goal is
    dropped, the user's task runs, and no self-set task was queued ahead of it."""
    import threading

    release, holding = threading.Event(), threading.Event()
    script = SocietyScript()

    def responder(model, messages, fmt):
        if isinstance(fmt, dict) and "goal" in fmt.get("properties", {}):
            holding.set()
            release.wait(30)
        return script(model, messages, fmt)

    config = write_config(tmp_path / "config", settings=autonomy_settings())
    with OllamaStandIn(models=MODELS, responder=responder) as server:
        with BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            events = backend.subscribe()
            assert holding.wait(30), "the motivator never asked for a goal"
            task_id = backend.request("submit_task", text="It is raining. What should I wear?")["task_id"]
            time.sleep(0.5)
            release.set()
            done = wait_for_task(events, task_id, {"done", "failed"}, 60)
            assert done["status"] == "done"
            state = backend.request("get_state")["state"]
            assert [t["source"] for t in state["tasks"]][:1] == ["user"], "nothing self-set ran before it"
            events.close()
    assert "goal is not written" in backend.output() or "dropped: work arrived" in backend.output()


@pytest.mark.timeout(600)
def test_the_embedded_model_writes_an_idle_goal(tmp_path):
    """Plumbing on the real (small) model: the goal is schema-constrained JSON and becomes a task."""
    config = write_config(tmp_path / "config", settings=autonomy_settings(**{"autonomy.idle_after_s": 1.0}))
    with BackendProcess(tmp_path / "data", config) as backend:
        events = backend.subscribe()
        goal = collect(events, "goal", 400)
        assert goal, f"no goal event:\n{backend.output()[-3000:]}"
        assert len(goal[0]["goal"]) >= 12 and goal[0]["why"] and goal[0]["trigger"] == "idle"
        assert goal[0]["kind"] in ("task", "reflect")
        task = next(t for t in backend.request("get_state")["state"]["tasks"] if t["task_id"] == goal[0]["task_id"])
        if goal[0]["kind"] == "task":
            assert task["source"] == "motivator" and task["text"] == goal[0]["goal"]
        else:
            assert task["kind"] == "inquiry" and task["details"] == {"topic": goal[0]["goal"], "trigger": "motivator"}
        backend.request("cancel_task", task_id=task["task_id"])
        events.close()


TOOL = {"name": "word_count", "docstring": "Count the words in a text.",
        "code": 'def word_count(text: str) -> int:\n    """Count the words in a text."""\n    return len(text.split())\n',
        "tests": ["word_count('a b c') == 3", "word_count('') == 0"]}


@pytest.mark.needs_bwrap
def test_a_new_tool_gets_a_curiosity_task_in_which_brick_calls_it(tmp_path):
    """BRICK asks for a tool in a person's task; the forge makes it (tests in the sandbox); the Motivator
    queues a curiosity task behind that task; in it BRICK's arguments go to the tool in the sandbox and
    the dialogue starts from what it returned."""
    import json

    script = SocietyScript()
    script.push("arguments", {"arguments": {"text": "one two three four"}})
    asked_for_tool = []

    def responder(model, messages, fmt):
        props = fmt.get("properties", {}) if isinstance(fmt, dict) else {}
        if "code" in props:
            return json.dumps(TOOL)
        if "needs_tool" in props:
            first = not asked_for_tool
            asked_for_tool.append(1)
            answer = {"needs_tool": first, "tool_spec": "count the words in a text" if first else ""}
            if "call_tool" in props:
                answer.update(call_tool="", arguments={})
            return json.dumps(answer)
        return script(model, messages, fmt)

    config = write_config(tmp_path / "config", settings=autonomy_settings(**{
        "graph.tools": True, "autonomy.idle_after_s": 3600.0, "sandbox.backend": "bwrap"}))
    with OllamaStandIn(models=MODELS, responder=responder) as server:
        with BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            events = backend.subscribe()
            user = backend.request("submit_task", text="How many words are in my essay?")["task_id"]
            seen = []
            deadline = time.monotonic() + 120
            goal = None
            while goal is None and time.monotonic() < deadline:
                item = events.poll_event(1.0)
                if item:
                    seen.append(item)
                    if item[0] == "goal":
                        goal = item[1]
            assert goal is not None, [t for t, _ in seen]
            assert goal["trigger"] == "tool_created" and goal["builds_on"] == "word_count" and goal["kind"] == "task"
            assert any(t == "tool_created" and e["tool"]["name"] == "word_count" for t, e in seen)
            done = wait_for_task(events, user, {"done", "failed"}, 60)
            assert done["status"] == "done"
            curiosity = wait_for_task(events, goal["task_id"], {"running"}, 60)
            assert curiosity["kind"] == "curiosity" and curiosity["source"] == "curiosity"
            call = None
            while call is None:
                item = events.poll_event(60)
                assert item is not None, "no tool call in the curiosity task"
                if item[0] == "utterance" and item[1]["task_id"] == goal["task_id"] and item[1]["node"] == "tool_call":
                    call = item[1]
            assert call["persona"] == "BRICK" and call["data"]["ok"] is True
            assert call["text"] == "word_count({'text': 'one two three four'}) returned 4"
            finished = wait_for_task(events, goal["task_id"], {"done", "failed"}, 60)
            assert finished["status"] == "done"
            assert script.asked["arguments"] == 1
            events.close()
