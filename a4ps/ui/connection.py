"""Kivy-side bridge to the backend: SUB drained on the Kivy clock, REQ on a worker thread.

The frame loop never waits on the network: events are drained without blocking from
`Clock.schedule_interval`, commands and periodic pings run on one worker thread, and their
results come back to the main thread through `@mainthread`.

State never moves backwards: events arrive in `seq` order; a snapshot (a `state` event, or a
`get_state` reply with the `seq` it reflects) is shown only when newer than what is shown or from
another backend process (`run_id`); events it already reflects are dropped; during a resync the
stream is held and replayed after the snapshot, so a late snapshot cannot undo a newer event.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
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
        self._last_seq: int | None = None  # seq of the newest event or snapshot shown
        self._run_id: object = None  # the backend process those seqs belong to
        self._resyncing = False
        self._held: deque[tuple[str, dict]] = deque(maxlen=100_000)
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
        """Main thread: fetch a full snapshot; the event stream is held until it arrives."""
        if not self._resyncing:
            self._resyncing = True
            self.request("get_state", self._on_state_reply)

    def _on_state_reply(self, reply: dict) -> None:
        self._resyncing = False
        held, self._held = list(self._held), deque(maxlen=self._held.maxlen)
        state = reply.get("state")
        if reply.get("ok") and isinstance(state, dict):
            seq = reply.get("seq")
            self._show_snapshot({"topic": "state", "snapshot": state, "seq": seq if _is_seq(seq) else None})
        for topic, event in held:
            self._take(topic, event)

    # --- main thread: events ---------------------------------------------------------------
    def _drain(self, _dt: float) -> None:
        if self._subscriber is None:
            return
        for topic, event in self._subscriber.drain(self._drain_limit):
            self._take(topic, event)

    def _take(self, topic: str, event: dict) -> None:
        """One event of the stream, in order: held during a resync, dropped when the snapshot shown
        already reflects it, shown otherwise; a gap in seq starts a resync."""
        if self._resyncing:
            self._held.append((topic, event))
            return
        seq = event.get("seq") if _is_seq(event.get("seq")) else None
        if topic == "state" and isinstance(event.get("snapshot"), dict):
            newer = seq is None or self._last_seq is None or seq > self._last_seq
            if newer or event["snapshot"].get("run_id") != self._run_id:
                self._show_snapshot(event)
            return
        if seq is not None and self._last_seq is not None:
            if seq <= self._last_seq:
                return  # the snapshot shown already reflects it
            if seq != self._last_seq + 1:
                log.info("event gap (seq %s after %s): asking for a fresh snapshot", seq, self._last_seq)
                self.resync()
                self._held.append((topic, event))
                return
        if seq is not None:
            self._last_seq = seq
        self._dispatch(topic, event)

    def _show_snapshot(self, event: dict) -> None:
        self._run_id = event["snapshot"].get("run_id")
        self._last_seq = event.get("seq") if _is_seq(event.get("seq")) else None
        self._dispatch("state", event)

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
                self._deliver(self.resync)  # the backend came back (maybe a new process): start from its state

    @mainthread
    def _deliver(self, callback: Callable[..., None], *args: Any) -> None:
        if self._stopped:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("a reply handler failed")


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
