"""Supervised loops: every long-lived backend thread runs here, named, restarted and reported.

Why: a thread that dies silently leaves a backend that still answers while nothing works (a task
shown `running` forever, no more saves). So no backend loop owns a bare thread: a loop is a `step`
function the supervisor calls again and again until the stop event is set. Whatever escapes a step
is logged with its traceback, counted and kept as the loop's `last_error`; the loop resumes after a
back-off that doubles from `backoff_s` up to `max_backoff_s` and resets after a step that succeeds.
A job (`once=True`, e.g. re-validating tools at start) is done after its first successful step.

Health, one map per loop, goes into `ping` and the snapshot:
`name`, `state` (running | backing_off | done | stopped), `restarts`, `last_error`, `last_beat`
(UNIX time a step last began or ended).

Shutdown order (Backend.shutdown; also in docs/protocol.md):
  1. the stop event is set: loops finish their current step and take no new work;
  2. the running task gets `backend.shutdown_grace_s` to finish, then is cancelled and re-queued;
  3. loops are joined: task-worker first (it owns the model), then motivator (it writes goals with
     the model; stopping interrupts that), then curator (it asks the model for verdicts; stopping
     interrupts that and the episode stays unjudged), then adapters (its gate asks the model; a
     stopped gate runs again at the next start), then every other loop in the order it was
     started (tool-revalidation, autosave, finetune: the stop event makes it kill a running
     fine-tune job's process group, recorded `interrupted`; a4ps/finetune/tuner.py);
  4. the living image is saved a last time;
  5. the model is unloaded (only if those four loops ended) and memory is closed (after the curator,
     which reads it);
  6. the ZeroMQ server stops last, so the events of the steps above still reach clients.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

RUNNING, BACKING_OFF, DONE, STOPPED = "running", "backing_off", "done", "stopped"


@dataclass
class _Loop:
    name: str
    step: Callable[[], None]
    once: bool
    thread: threading.Thread | None = None
    state: str = RUNNING
    restarts: int = 0
    last_error: str | None = None
    last_beat: float | None = None

    def health(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "restarts": self.restarts,
                "last_error": self.last_error, "last_beat": self.last_beat}


class Supervisor:
    """Runs named loops on daemon threads until `stop` is set; see the module docstring."""

    def __init__(self, stop: threading.Event, backoff_s: float = 0.5, max_backoff_s: float = 30.0):
        self._stop = stop
        self._backoff_s, self._max_backoff_s = backoff_s, max_backoff_s
        self._loops: dict[str, _Loop] = {}
        self._lock = threading.Lock()

    def run(self, name: str, step: Callable[[], None], *, once: bool = False) -> None:
        """Start calling `step` on a thread named `name` (names are unique)."""
        loop = _Loop(name, step, once)
        with self._lock:
            if name in self._loops:
                raise ValueError(f"a loop named {name!r} is already supervised")
            self._loops[name] = loop
        loop.thread = threading.Thread(target=self._drive, args=(loop,), name=name, daemon=True)
        loop.thread.start()

    def _drive(self, loop: _Loop) -> None:
        delay = self._backoff_s
        while not self._stop.is_set():
            self._beat(loop, RUNNING)
            try:
                loop.step()
            except Exception as exc:  # noqa: BLE001 - the point of a supervisor
                log.exception("loop %s failed; restarting in %.1f s", loop.name, delay)
                with self._lock:
                    loop.restarts += 1
                    loop.last_error = f"{type(exc).__name__}: {exc}"
                self._beat(loop, BACKING_OFF)
                self._stop.wait(delay)
                delay = min(delay * 2, self._max_backoff_s)
                continue
            delay = self._backoff_s
            if loop.once:
                self._beat(loop, DONE)
                return
        self._beat(loop, STOPPED)

    def _beat(self, loop: _Loop, state: str) -> None:
        with self._lock:
            loop.state, loop.last_beat = state, time.time()

    def health(self) -> list[dict[str, Any]]:
        with self._lock:
            return [loop.health() for loop in self._loops.values()]

    def join(self, first: tuple[str, ...] = (), timeout_s: float = 30.0) -> list[str]:
        """Join the loops named in `first` in that order, then the rest in start order.

        Call after setting the stop event. Returns the names still alive after `timeout_s` each."""
        with self._lock:
            loops = [self._loops[n] for n in first if n in self._loops]
            loops += [loop for loop in self._loops.values() if loop not in loops]
        alive = []
        for loop in loops:
            if loop.thread is not None and loop.thread is not threading.current_thread():
                loop.thread.join(timeout_s)
                if loop.thread.is_alive():
                    log.error("loop %s did not stop within %.0f s", loop.name, timeout_s)
                    alive.append(loop.name)
        return alive
