"""A thread-safe publish/subscribe bus; a failing listener is logged and never breaks the publisher."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

Listener = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    topic: str
    payload: dict[str, Any]
    seq: int
    time: float = field(default_factory=time.time)

    def as_map(self) -> dict[str, Any]:
        """The wire form: payload plus topic, seq and time."""
        return {**self.payload, "topic": self.topic, "seq": self.seq, "time": self.time}


class EventBus:
    """Listeners subscribe to a topic or to "*" (everything); publish calls them synchronously."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def subscribe(self, topic: str, listener: Listener) -> Callable[[], None]:
        """Register; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.setdefault(topic, []).append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners.get(topic, []):
                    self._listeners[topic].remove(listener)

        return unsubscribe

    def publish(self, topic: str, **payload: Any) -> Event:
        with self._lock:
            event = Event(topic, payload, next(self._seq))
            listeners = list(self._listeners.get(topic, ())) + list(self._listeners.get("*", ()))
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not break the publisher
                log.exception("event listener %r failed on %s", listener, topic)
        return event


class BusLogHandler(logging.Handler):
    """Forwards log records to the bus as `log` events (the UI shows them)."""

    def __init__(self, bus: EventBus, level: int = logging.INFO):
        super().__init__(level)
        self._bus = bus
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._local, "busy", False):  # a listener that logs must not recurse
            return
        self._local.busy = True
        try:
            self._bus.publish("log", level=record.levelname, logger=record.name, message=record.getMessage())
        except Exception:
            self.handleError(record)
        finally:
            self._local.busy = False
