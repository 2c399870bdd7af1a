"""The Motivator starts an inquiry itself, against a real backend process with scripted answers from the
Ollama stand-in: an idle goal of kind `reflect` becomes an inquiry (the goal its topic, trigger
`motivator`) and then a `codex_proposal`; it counts against the hourly budget; within
`autonomy.inquiry_cooldown_s` of an inquiry (the Motivator's, or one a person asked for, also across a
restart) only a task is offered, and a `reflect` answer then is refused and asked again."""

from __future__ import annotations

import json

from tests.support.backend import BackendProcess, wait_for_task
from tests.support.config import write_config
from tests.support.ollama_standin import OllamaStandIn
from tests.support.society_script import MODELS, SocietyScript
from tests.test_autonomy import autonomy_settings, collect
from tests.test_cadence import NEW_PROMPT, inquire, next_event

REFLECT = {"kind": "reflect", "goal": "Reflect on whether ROBIN's long replies keep drifting from BRICK's point.",
           "why": "The recent dialogues ended in high dissonance.", "builds_on": "the recent dissonance"}
REFLECT_AGAIN = {**REFLECT, "goal": "Reflect on whether the principle of honesty needs a clearer wording."}
TASK = {"kind": "task", "goal": "Compare two ways to sort a list of words.", "why": "Sorting came up.",
        "builds_on": "nothing yet"}


class GoalLog:
    """The script, recording for each goal ALFRED was asked for the kinds offered and the prompt."""

    def __init__(self, script: SocietyScript):
        self.script, self.asked = script, []

    def __call__(self, model, messages, fmt):
        if isinstance(fmt, dict) and "goal" in fmt.get("properties", {}):
            self.asked.append((fmt["properties"]["kind"]["enum"], messages[-1]["content"]))
        return self.script(model, messages, fmt)


def settings(**overrides):
    return autonomy_settings(**{"cadence.preview_tasks": 0, "autonomy.inquiry_cooldown_s": 3600.0, **overrides})


def test_a_reflect_goal_becomes_an_inquiry_and_its_proposal_then_the_cooldown_offers_only_a_task(tmp_path):
    script = SocietyScript()
    script.push("goal", REFLECT, REFLECT_AGAIN, TASK)
    script.push("proposal", NEW_PROMPT)
    goals = GoalLog(script)
    config = write_config(tmp_path / "config", settings=settings())
    with OllamaStandIn(models=MODELS, responder=goals) as server:
        with BackendProcess(tmp_path / "data", config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            events = backend.subscribe()
            goal = collect(events, "goal", 60)
            assert goal, backend.output()[-3000:]
            goal = goal[0]
            assert goal["kind"] == "reflect" and goal["goal"] == REFLECT["goal"] and goal["trigger"] == "idle"
            proposal = next_event(events, "codex_proposal", 60)
            assert proposal is not None, backend.output()[-3000:]
            assert proposal["trigger"] == "motivator" and proposal["subject"] == REFLECT["goal"]
            state = backend.request("get_state")["state"]
            inquiry = next(t for t in state["tasks"] if t["task_id"] == goal["task_id"])
            assert inquiry["kind"] == "inquiry" and inquiry["source"] == "motivator" and inquiry["priority"] == 1
            assert inquiry["details"] == {"topic": REFLECT["goal"], "trigger": "motivator"}
            assert state["autonomy"]["state"] == "paused" and state["autonomy"]["goals_this_hour"] == 1
            assert goals.asked[0][0] == ["task", "reflect"] and "Reflection: open" in goals.asked[0][1]

            rejected = backend.request("decide_proposal", proposal_id=proposal["proposal_id"], decision="reject")
            assert rejected["ok"]
            second = collect(events, "goal", 60)
            assert second and second[0]["kind"] == "task" and second[0]["goal"] == TASK["goal"], "asked again as a task"
            assert [kinds for kinds, _ in goals.asked[1:]] == [["task"], ["task"]]
            assert "Reflection: closed (an inquiry ran 0 min ago; autonomy.inquiry_cooldown_s is 3600 s)" \
                in goals.asked[1][1]
            task = wait_for_task(events, second[0]["task_id"], {"done", "failed"}, 60)
            assert task["kind"] == "dialogue" and task["source"] == "motivator" and task["status"] == "done"
            assert collect(events, "goal", 4) == [], "the budget (2 an hour) counts the reflection"
            state = backend.request("get_state")["state"]
            assert state["autonomy"]["goals_this_hour"] == 2
            assert [t["kind"] for t in state["tasks"]].count("inquiry") == 1 and state["proposal"] is None
            events.close()
    assert "is not one of ['task']" in backend.output(), "the reflect answer under the cooldown was refused"
    assert script.asked["goal"] == 3 and script.asked["proposal"] == 1


def test_an_inquiry_a_person_asked_for_closes_reflection_across_a_restart_until_the_cooldown_ends(tmp_path):
    script = SocietyScript()
    script.push("goal", TASK)
    script.push("proposal", NEW_PROMPT)
    goals = GoalLog(script)
    data = tmp_path / "data"
    quiet = settings(**{"autonomy.idle_after_s": 3600.0})
    with OllamaStandIn(models=MODELS, responder=goals) as server:
        env = {"OLLAMA_HOST": server.host}
        with BackendProcess(data, write_config(tmp_path / "quiet", settings=quiet), extra_env=env) as backend:
            events = backend.subscribe()
            _, proposal = inquire(backend, events)
            assert backend.request("decide_proposal", proposal_id=proposal["proposal_id"], decision="reject")["ok"]
            events.close()
        assert json.loads((data / "autonomy.json").read_text())["last_inquiry_at"] is not None
        with BackendProcess(data, write_config(tmp_path / "idle", settings=settings()), extra_env=env) as backend:
            events = backend.subscribe()
            goal = collect(events, "goal", 60)
            assert goal and goal[0]["kind"] == "task"
            assert goals.asked[0][0] == ["task"] and "Reflection: closed (an inquiry ran" in goals.asked[0][1]
            events.close()
        cooled = settings(**{"autonomy.inquiry_cooldown_s": 0.0})
        script.queues["goal"].clear()
        script.push("goal", REFLECT)
        with BackendProcess(data, write_config(tmp_path / "cooled", settings=cooled), extra_env=env) as backend:
            events = backend.subscribe()
            goal = collect(events, "goal", 60)
            assert goal and goal[0]["kind"] == "reflect", "with no cooldown reflection is open again"
            assert goals.asked[-1][0] == ["task", "reflect"]
            assert next_event(events, "codex_proposal", 60) is not None
            events.close()
