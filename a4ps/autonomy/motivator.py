"""The Motivator, the autotelic loop: idle time becomes a goal, a new tool a curiosity task.

Why: BAT OS is not passive. But it is courteous and budgeted: it acts only when nothing ran or
waited for `autonomy.idle_after_s`, sets at most `max_goals_per_hour` goals, keeps at most one
self-set task waiting (and the queue runs a person's task before it), stops writing a goal the
moment a person submits one, and pauses when the user says so or while a codex proposal waits.

An idle goal of kind `reflect` becomes an inquiry into the codex (trigger `motivator`, the goal as its
topic) instead of a task; it counts against the budget like any goal, and is offered only while no
proposal awaits a decision and no inquiry ran within `autonomy.inquiry_cooldown_s` (checked again once
written: a reflection closed meanwhile is skipped).

It is fed by the EventBus (`on_event`) and runs as the supervised loop `motivator` (one `step` at a
time). Every self-set goal is published as a `goal` event; its state as an `autonomy` event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from a4ps.autonomy.goals import REFLECT, TASK, Goal, GoalRefused, GoalWriter
from a4ps.autonomy.ledger import OFF, PAUSED, RUNNING, AutonomyLedger
from a4ps.backend.tasks import CURIOSITY, DIALOGUE, DONE, FAILED, INQUIRY, QUEUED, USER, TaskQueue
from a4ps.backend.tasks import RUNNING as TASK_RUNNING  # the ledger's RUNNING is autonomy's state
from a4ps.config.schema import Autonomy
from a4ps.events import Event, EventBus
from a4ps.graph.voice import TaskCancelled
from a4ps.models import ModelError

log = logging.getLogger(__name__)

HOUR_S, DAY_S = 3600.0, 86400.0
STEP_WAIT_S = 1.0


class Motivator:
    """Decides when the society sets itself work; see the module docstring."""

    def __init__(self, config: Autonomy, ledger: AutonomyLedger, tasks: TaskQueue, bus: EventBus,
                 writer: GoalWriter, stop: threading.Event,
                 request_inquiry: Callable[[str, str], Any] | None = None,
                 clock: Callable[[], float] = time.time):
        """`request_inquiry(topic, trigger)` queues an inquiry and returns its task, or None when refused."""
        self._config, self._ledger, self._tasks, self._bus = config, ledger, tasks, bus
        self._writer, self._stop, self._request_inquiry, self._clock = writer, stop, request_inquiry, clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._interrupt = threading.Event()  # set: stop writing the goal now (a person needs the model)
        self._held: str | None = None  # why autonomy waits on something other than the user (a proposal)
        self._new_tools: deque[dict[str, Any]] = deque()
        self._dissonant: deque[float] = deque()
        self._last_activity = clock()
        self._published: tuple[str, str] | None = None

    # --- state ------------------------------------------------------------------------------------
    def state(self) -> tuple[str, str]:
        """(state, reason): off by settings, paused by the user or by a pending proposal, else running."""
        if not self._config.enabled:
            return OFF, "autonomy.enabled is false in settings"
        if self._ledger.choice == PAUSED:
            return PAUSED, "paused by the user"
        with self._lock:
            held = self._held
        if held:
            return PAUSED, held
        return RUNNING, f"sets a goal after {self._config.idle_after_s:g} s without tasks"

    def snapshot(self) -> dict[str, Any]:
        state, reason = self.state()
        goals = len(self._ledger.goals_since(self._clock() - HOUR_S))
        return {"state": state, "reason": reason, "goals_this_hour": goals,
                "budget": self._config.max_goals_per_hour, "idle_after_s": self._config.idle_after_s}

    def _publish_if_changed(self, force: bool = False) -> None:
        current = self.state()
        if force or current != self._published:
            self._published = current
            self._bus.publish("autonomy", **self.snapshot())

    def set_choice(self, choice: str) -> dict[str, Any]:
        """The user's `set_autonomy`: kept on disk, so it survives restarts."""
        self._ledger.set_choice(choice)
        if choice == PAUSED:
            self._interrupt.set()
        self._last_activity = self._clock()  # resuming waits a whole idle period, not a stale one
        self._publish_if_changed(force=True)
        self._wake.set()
        return self.snapshot()

    def hold(self, reason: str | None) -> None:
        """Pause (with `reason`) or release a pause that is not the user's: a proposal awaits a decision."""
        with self._lock:
            self._held = reason
        if reason:
            self._interrupt.set()
        else:
            self._last_activity = self._clock()
        self._publish_if_changed()
        self._wake.set()

    def interrupt(self) -> None:
        """Stop a goal being written now (shutdown); the step then returns at once."""
        self._interrupt.set()
        self._wake.set()

    # --- what the bus tells it --------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        payload = event.payload
        if event.topic == "task":
            self._last_activity = self._clock()
            if payload.get("status") == QUEUED and payload.get("priority", USER) == USER:
                self._interrupt.set()  # a person's task: the model is theirs
            if payload.get("kind") == INQUIRY and payload.get("status") in (TASK_RUNNING, DONE, FAILED):
                try:
                    self._ledger.note_inquiry(self._clock())
                except OSError as exc:
                    log.error("motivator: when the inquiry ran is not kept on disk (%s); the cooldown holds "
                              "until a restart", exc)
        elif event.topic == "tool_created":
            tool = payload.get("tool") or {}
            if tool.get("name"):
                with self._lock:
                    self._new_tools.append(tool)
                self._wake.set()
        elif event.topic == "high_cognitive_dissonance":
            now = self._clock()
            with self._lock:
                self._dissonant.append(now)
                while self._dissonant and self._dissonant[0] < now - DAY_S:
                    self._dissonant.popleft()
                due = len(self._dissonant) >= self._config.inquiry_after
                if due:
                    self._dissonant.clear()
            if due and self.state()[0] == RUNNING and self._request_inquiry is not None:
                log.info("motivator: %d high-dissonance tasks within a day; asking for an inquiry",
                         self._config.inquiry_after)
                self._request_inquiry("", "dissonance")

    # --- the loop ---------------------------------------------------------------------------------
    def step(self) -> None:
        """One look at the society: maybe a curiosity task, maybe an idle goal."""
        self._wake.wait(STEP_WAIT_S)
        self._wake.clear()
        if self._stop.is_set():
            return
        self._publish_if_changed()
        if self.state()[0] != RUNNING or self._tasks.waiting(self_set=True):
            return
        if len(self._ledger.goals_since(self._clock() - HOUR_S)) >= self._config.max_goals_per_hour:
            return
        with self._lock:
            tool = self._new_tools.popleft() if self._new_tools else None
        if tool is not None:
            self._curiosity(tool)
            return
        if self._tasks.idle and self._clock() - self._last_activity >= self._config.idle_after_s:
            self._idle_goal()

    def _curiosity(self, tool: dict[str, Any]) -> None:
        goal = f"Try the new tool {tool.get('signature') or tool['name']} and say what it is good for."
        why = f"The tool {tool['name']} was just made; calling it once shows whether it does what it should."
        task = self._tasks.submit_self_set(goal, "curiosity", kind=CURIOSITY, details={"tool": tool["name"]})
        if task is None:
            with self._lock:
                self._new_tools.appendleft(tool)
            return
        self._record(goal, why, tool["name"], "tool_created", task.task_id, TASK)

    def _reflection_closed(self) -> str | None:
        """Why an idle goal may not be a reflection on the codex now; None when it may."""
        if self._request_inquiry is None:
            return "no inquiry can be requested"
        with self._lock:
            held = self._held
        if held:
            return held
        last, cooldown = self._ledger.last_inquiry_at, self._config.inquiry_cooldown_s
        if last is not None and (ago := self._clock() - last) < cooldown:
            return f"an inquiry ran {ago / 60:.0f} min ago; autonomy.inquiry_cooldown_s is {cooldown:g} s"
        return None

    def _idle_goal(self) -> None:
        self._interrupt.clear()
        started = self._clock()
        try:
            goal = self._writer.write(self._ledger.recent_goals(), self._interrupt, self._reflection_closed())
        except TaskCancelled:
            log.info("motivator: a person needs the model; the goal is not written")
            return
        except (GoalRefused, ModelError) as exc:
            log.warning("motivator: no goal set: %s", exc)
            self._last_activity = self._clock()  # try again after another idle period
            return
        if self._interrupt.is_set() or self.state()[0] != RUNNING or self._last_activity > started:
            log.info("motivator: goal %r dropped: work arrived or autonomy paused while it was written",
                     goal.goal[:80])
            return
        if goal.kind == REFLECT:
            self._reflect(goal)
            return
        task = self._tasks.submit_self_set(goal.goal, "motivator", kind=DIALOGUE,
                                           details={"why": goal.why, "trigger": "idle"})
        if task is None:
            return
        self._record(goal.goal, goal.why, goal.builds_on, "idle", task.task_id, TASK)

    def _reflect(self, goal: Goal) -> None:
        """The goal is a reflection: an inquiry with the goal as its topic, if reflection is still open."""
        closed = self._reflection_closed()  # it was open when asked; a proposal or inquiry may have come since
        task = None if closed else self._request_inquiry(goal.goal, "motivator")
        if task is None:
            log.info("motivator: reflection %r skipped: %s", goal.goal[:80], closed or "the inquiry was refused")
            self._last_activity = self._clock()  # ask again after another idle period
            return
        self._record(goal.goal, goal.why, goal.builds_on, "idle", task.task_id, REFLECT)

    def _record(self, goal: str, why: str, builds_on: str, trigger: str, task_id: str, kind: str) -> None:
        self._ledger.record_goal({"goal": goal, "why": why, "trigger": trigger, "task_id": task_id,
                                  "kind": kind, "at": self._clock()})
        log.info("motivator: goal set (%s, %s): %s", trigger, kind, goal[:120])
        self._bus.publish("goal", goal=goal, why=why, builds_on=builds_on, trigger=trigger, task_id=task_id,
                          kind=kind)
        self._publish_if_changed(force=True)
