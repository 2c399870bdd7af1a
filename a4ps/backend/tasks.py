"""The persistent task queue: tasks wait here (and in the living image) until they are finished."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = {DONE, FAILED, CANCELLED}

# Priorities (lower runs first): a person's task always runs before a waiting self-set one.
USER, SELF_SET = 0, 1
# Kinds of work the worker runs: a dialogue through the Socratic graph, a curiosity task (BRICK tries
# a new tool first), an inquiry into the codex (a4ps/cadence).
DIALOGUE, CURIOSITY, INQUIRY = "dialogue", "curiosity", "inquiry"


@dataclass
class Task:
    text: str
    source: str = "user"
    task_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: str | None = None
    error: str | None = None
    turns: int = 0
    dissonance: list[float] = field(default_factory=list)
    attempts: int = 0  # starts that did not end in an orderly way (a crash of the process counts)
    priority: int = USER
    kind: str = DIALOGUE
    details: dict[str, Any] = field(default_factory=dict)  # what the kind needs (the tool, the topic)

    def as_map(self) -> dict[str, Any]:
        return asdict(self)


class TaskQueue:
    """Pending tasks by priority (FIFO within one), the running one and a bounded list of finished ones."""

    def __init__(self, recent: int = 50, on_change: Callable[[Task], None] | None = None, max_attempts: int = 3):
        self._max_attempts = max_attempts
        self._pending: deque[Task] = deque()
        self._running: Task | None = None
        self._finished: deque[Task] = deque(maxlen=recent)
        self._cond = threading.Condition()
        self._on_change = on_change

    def set_listener(self, on_change: Callable[[Task], None]) -> None:
        self._on_change = on_change

    def _changed(self, task: Task) -> None:
        if self._on_change is not None:
            self._on_change(task)

    def submit(self, text: str, source: str = "user", *, priority: int = USER, kind: str = DIALOGUE,
               details: dict[str, Any] | None = None) -> tuple[Task, int]:
        """Queue a task; returns it and its place in the running order (1 = next)."""
        task = Task(text=text, source=source, priority=priority, kind=kind, details=dict(details or {}))
        with self._cond:
            self._pending.append(task)
            position = self._position(task)
            self._cond.notify_all()
        self._changed(task)
        return task, position

    def submit_self_set(self, text: str, source: str, *, kind: str = DIALOGUE,
                        details: dict[str, Any] | None = None) -> Task | None:
        """Queue a self-set task unless one is already waiting (at most one at a time): None then."""
        with self._cond:
            if any(t.priority >= SELF_SET for t in self._pending):
                return None
            task = Task(text=text, source=source, priority=SELF_SET, kind=kind, details=dict(details or {}))
            self._pending.append(task)
            self._cond.notify_all()
        self._changed(task)
        return task

    def _position(self, task: Task) -> int:
        return 1 + sum(1 for t in self._pending if t is not task and
                       (t.priority < task.priority or t.priority == task.priority and t.created_at <= task.created_at))

    def _next(self) -> Task:
        """The first pending task of the most urgent priority (the deque keeps arrival order)."""
        return min(self._pending, key=lambda t: t.priority)

    def waiting(self, *, self_set: bool | None = None) -> list[Task]:
        """Pending tasks (only self-set ones, or only the users', when asked)."""
        with self._cond:
            return [t for t in self._pending
                    if self_set is None or (t.priority >= SELF_SET) == self_set]

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits."""
        with self._cond:
            return self._running is None and not self._pending

    def take(self, timeout: float) -> Task | None:
        """The next pending task, now marked running; None if none arrives within timeout."""
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout)
            if not self._pending or self._running is not None:
                return None
            task = self._next()
            self._pending.remove(task)
            task.status, task.started_at = RUNNING, time.time()
            task.attempts += 1
            self._running = task
        self._changed(task)
        return task

    def finish(self, task: Task, status: str, *, result: str | None = None, error: str | None = None) -> None:
        with self._cond:
            task.status, task.finished_at = status, time.time()
            task.result, task.error = result, error
            if self._running is task:
                self._running = None
            self._finished.append(task)
            self._cond.notify_all()
        self._changed(task)

    def requeue(self, task: Task) -> None:
        """Put the running task back at the front (shutdown interrupted it: an orderly end, not a crash)."""
        with self._cond:
            task.status, task.started_at = QUEUED, None
            task.attempts = max(0, task.attempts - 1)
            task.turns, task.dissonance = 0, []
            if self._running is task:
                self._running = None
            self._pending.appendleft(task)
            self._cond.notify_all()
        self._changed(task)

    def cancel_pending(self, task_id: str) -> Task | None:
        with self._cond:
            for task in self._pending:
                if task.task_id == task_id:
                    self._pending.remove(task)
                    break
            else:
                return None
        self.finish(task, CANCELLED, error="cancelled before it started")
        return task

    def find(self, task_id: str) -> Task | None:
        with self._cond:
            for task in (*self._pending, *([self._running] if self._running else []), *self._finished):
                if task.task_id == task_id:
                    return task
        return None

    @property
    def running(self) -> Task | None:
        with self._cond:
            return self._running

    def snapshot(self) -> list[dict[str, Any]]:
        with self._cond:
            tasks = [*self._finished, *([self._running] if self._running else []), *self._pending]
            return [task.as_map() for task in tasks]

    def export(self) -> list[dict[str, Any]]:
        """For the image: a running task is stored as queued, so a crash re-runs it."""
        with self._cond:
            pending = ([self._running] if self._running else []) + list(self._pending)
            out = [{**task.as_map(), "status": QUEUED, "started_at": None} for task in pending]
            return out + [task.as_map() for task in self._finished]

    def restore(self, tasks: list[dict[str, Any]]) -> None:
        with self._cond:
            for item in tasks:
                task = Task(**item)
                if task.status in FINISHED:
                    self._finished.append(task)
                elif task.attempts >= self._max_attempts:  # it took the process down every time
                    task.status, task.finished_at = FAILED, time.time()
                    task.error = (f"the backend stopped unexpectedly {task.attempts} times while running this "
                                  "task (backend.max_task_attempts); it is not run again")
                    self._finished.append(task)
                else:
                    task.status = QUEUED
                    self._pending.append(task)
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
