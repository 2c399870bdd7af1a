"""Kivy-side bridge to the backend: SUB drained on the Kivy clock, REQ on a worker thread.

The frame loop never waits on the network: events are drained without blocking from
`Clock.schedule_interval`, commands and periodic pings run on one worker thread, and their
results come back to the main thread through `@mainthread`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import zmq
from kivy.clock import Clock, mainthread

from a4ps.client.connection import BackendUnavailable, EventSubscriber, Requester

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict], None]
ReplyHandler = Callable[[dict], None]
ConnectionHandler = Callable[[bool, dict], None]

_STOP = object()


class BackendBridge:
    """One SUB and one REQ link to the backend, safe to use from the Kivy main thread."""

    def __init__(self, pub_addr: str, rep_addr: str, on_event: EventHandler, on_connection: ConnectionHandler,
                 *, request_timeout_s: float = 5.0, ping_interval_s: float = 2.0, ping_timeout_s: float = 1.5,
                 poll_interval_s: float = 1 / 30, drain_limit: int = 500, token_file: Path | None = None):
        self.pub_addr, self.rep_addr = pub_addr, rep_addr
        self._token_file = token_file  # the backend's control.token: state-changing commands carry it
        self._on_event = on_event
        self._on_connection = on_connection
        self._request_timeout_s = request_timeout_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._poll_interval_s = poll_interval_s
        self._drain_limit = drain_limit
        self._queue: queue.Queue = queue.Queue()
        self._subscriber: EventSubscriber | None = None
        self._requester: Requester | None = None
        self._thread: threading.Thread | None = None
        self._poll = None
        self._connected: bool | None = None  # None until the first answer or timeout
        self._last_seq: int | None = None
        self._stopped = False

    def start(self) -> None:
        """Connect the sockets, start the worker thread and the event drain, ask for a snapshot."""
        self._subscriber = EventSubscriber(self.pub_addr)
        self._requester = Requester(self.rep_addr, timeout_s=self._request_timeout_s, token_file=self._token_file)
        self._thread = threading.Thread(target=self._work, name="a4ps-ui-requests", daemon=True)
        self._thread.start()
        self._poll = Clock.schedule_interval(self._drain, self._poll_interval_s)
        self.resync()

    def stop(self) -> None:
        """Stop the drain and the worker; close both sockets. Pending callbacks are dropped."""
        if self._stopped:
            return
        self._stopped = True
        if self._poll is not None:
            self._poll.cancel()
        self._queue.put(_STOP)
        if self._subscriber is not None:
            self._subscriber.close()
        if self._thread is not None:
            self._thread.join(0.3)
            if self._thread.is_alive():
                return  # still waiting on a slow command: its socket dies with this daemon thread
        if self._requester is not None:
            self._requester.close()

    def request(self, cmd: str, callback: ReplyHandler | None = None, **args: Any) -> None:
        """Queue a command; `callback(reply)` runs on the main thread. A reply always has `ok`;
        when the backend cannot be reached it is {ok: False, code: "unavailable", error}."""
        if not self._stopped:
            self._queue.put((cmd, args, callback))

    def resync(self) -> None:
        """Fetch a full snapshot and hand it to the event handler as a `state` event."""
        self.request("get_state", self._on_state_reply)

    def _on_state_reply(self, reply: dict) -> None:
        if reply.get("ok") and isinstance(reply.get("state"), dict):
            self._dispatch("state", {"topic": "state", "snapshot": reply["state"]})

    # --- main thread: events ---------------------------------------------------------------
    def _drain(self, _dt: float) -> None:
        if self._subscriber is None:
            return
        for topic, event in self._subscriber.drain(self._drain_limit):
            seq = event.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                if self._last_seq is not None and seq != self._last_seq + 1 and topic != "state":
                    log.info("event gap (seq %s after %s): asking for a fresh snapshot", seq, self._last_seq)
                    self.resync()
                self._last_seq = seq
            self._dispatch(topic, event)

    def _dispatch(self, topic: str, event: dict) -> None:
        try:
            self._on_event(topic, event)
        except Exception:  # a malformed event must not take the window down
            log.exception("could not show a %r event", topic)

    # --- worker thread: commands and pings ---------------------------------------------------
    def _work(self) -> None:
        next_ping = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_ping - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if item is None:
                reply = self._call("ping", {}, self._ping_timeout_s)
                next_ping = time.monotonic() + self._ping_interval_s
                self._deliver(self._on_connection, bool(reply.get("ok")), reply)
                continue
            cmd, args, callback = item
            reply = self._call(cmd, args, None)
            if callback is not None:
                self._deliver(callback, reply)

    def _call(self, cmd: str, args: dict, timeout_s: float | None) -> dict:
        assert self._requester is not None
        try:
            reply = self._requester.request(cmd, timeout_s=timeout_s, **args)
        except BackendUnavailable as exc:
            self._set_connected(False, {"ok": False, "code": "unavailable", "error": str(exc)})
            return {"ok": False, "code": "unavailable", "error": f"backend not reachable ({exc})"}
        except (zmq.ZMQError, ValueError, TypeError) as exc:  # includes msgpack's decode errors
            self._requester.close()
            return {"ok": False, "code": "bad_reply", "error": f"{cmd}: {type(exc).__name__}: {exc}"}
        if "ok" not in reply:
            reply = {"ok": False, "code": "bad_reply", "error": f"{cmd}: reply without 'ok'"}
        self._set_connected(True, reply)
        return reply

    def _set_connected(self, connected: bool, reply: dict) -> None:
        was = self._connected
        self._connected = connected
        if was is not connected:
            self._deliver(self._on_connection, connected, reply)
            if connected and was is False:
                self.resync()  # the backend came back (maybe a new process): start from its state

    @mainthread
    def _deliver(self, callback: Callable[..., None], *args: Any) -> None:
        if self._stopped:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("a reply handler failed")
