"""ZeroMQ front door: XPUB for events (a snapshot on every join) and REP for commands.

One thread owns both sockets. Events reach it on one ordered path: `publish` (any thread) stamps
the wire `seq` and serialises the event under one lock, appends it to an outbox and rings a pipe
the server thread polls beside its sockets; the server thread sends the outbox in order. So
clients see seq strictly increasing, and no publishing thread owns a socket.

A `state` event (the snapshot) takes its seq in the same order but is built by the server thread
when its turn comes, so it reflects at least every event with a lower seq. `published_seq` is the
newest seq stamped: a snapshot built after reading it reflects every event up to it (get_state).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable

import msgpack
import zmq

from a4ps.config.loader import bind_address_problem
from a4ps.errors import CodedError
from a4ps.events import Event

log = logging.getLogger(__name__)

HWM = 100_000
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class RequestError(CodedError):
    """A command cannot be served; `code` goes into the error reply."""


def error_reply(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "error": message}


def _wire_text(value: Any) -> Any:
    """Strings made encodable: surrogate pairs joined, lone surrogates replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_wire_text(k): _wire_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire_text(v) for v in value]
    return value


def pack(message: dict[str, Any]) -> tuple[bytes, bool]:
    """msgpack for the wire, and whether text had to be repaired (split surrogates): repaired, not
    dropped. Logs nothing, so it can run under the publish lock (a log record is an event too)."""
    try:
        return msgpack.packb(message, use_bin_type=True, default=str), False
    except UnicodeEncodeError:
        return msgpack.packb(_wire_text(message), use_bin_type=True, default=str), True


class ZmqServer:
    """Serves commands through `handler` and publishes events handed to `publish`."""

    def __init__(self, pub_addr: str, rep_addr: str, max_request_bytes: int, handler: Handler,
                 snapshot: Callable[[], dict[str, Any]], allow_remote: bool = False):
        self.pub_addr, self.rep_addr = pub_addr, rep_addr
        self._allow_remote = allow_remote
        self._max_request = max_request_bytes
        self._handler = handler
        self._snapshot = snapshot
        self._context = zmq.Context()
        self._lock = threading.Lock()
        self._seq = 0
        self._outbox: deque[tuple[str, int, float, bytes | None]] = deque()  # topic, seq, time, packed
        self._rung = False
        self._closed = False  # set (under the lock) when the bell pipe is closed
        self._bell_r, self._bell_w = os.pipe()
        os.set_blocking(self._bell_r, False)
        os.set_blocking(self._bell_w, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._bind_error: Exception | None = None

    def start(self) -> None:
        """Bind (raising OSError if an address is taken or not local) and serve on a thread."""
        for address in (self.pub_addr, self.rep_addr):
            problem = None if self._allow_remote else bind_address_problem(address)
            if problem:
                raise OSError(f"refusing to serve on {address!r}: it {problem} (zmq.allow_remote is false)")
        self._thread = threading.Thread(target=self._serve, name="zmq-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._bind_error is not None:
            raise self._bind_error

    # --- the ordered path (any thread) ------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """Thread-safe: stamp the next seq, serialise, queue for the XPUB socket."""
        if self._stop.is_set():
            return
        message = {**event.payload, "topic": event.topic, "time": event.time}
        failure, repaired = None, False
        with self._lock:  # no logging in here: the log handler publishes, and this lock is not re-entrant
            try:
                packed, repaired = pack({**message, "seq": self._seq + 1})
            except Exception as exc:  # an unencodable payload loses its event, never the publisher
                failure = exc
            else:
                self._seq += 1
                self._outbox.append((event.topic, self._seq, event.time, packed))
                self._ring()
        if failure is not None:
            log.error("event %s dropped: cannot be encoded (%s)", event.topic, failure)
        elif repaired:
            log.warning("%s event held text that is not valid Unicode (split surrogates); repaired", event.topic)

    def publish_snapshot(self) -> None:
        """Thread-safe: queue a `state` event, built by the server thread when its turn comes."""
        with self._lock:
            self._seq += 1
            self._outbox.append(("state", self._seq, time.time(), None))
            self._ring()

    def published_seq(self) -> int:
        """The newest seq stamped; read it before building a snapshot to know what it reflects."""
        with self._lock:
            return self._seq

    def _ring(self) -> None:  # under self._lock
        if not self._rung and not self._closed:
            self._rung = True
            try:
                os.write(self._bell_w, b"\0")
            except BlockingIOError:
                pass  # already full of rings: the server thread will wake anyway

    # --- the server thread -------------------------------------------------------------------------
    def _serve(self) -> None:
        xpub, rep = self._context.socket(zmq.XPUB), self._context.socket(zmq.REP)
        xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
        xpub.setsockopt(zmq.SNDHWM, HWM)
        xpub.setsockopt(zmq.LINGER, 0)
        rep.setsockopt(zmq.LINGER, 0)
        rep.setsockopt(zmq.MAXMSGSIZE, self._max_request * 16)
        try:
            xpub.bind(self.pub_addr)
            rep.bind(self.rep_addr)
        except zmq.ZMQError as exc:
            self._bind_error = OSError(f"cannot bind {self.pub_addr} / {self.rep_addr}: {exc}")
            for sock in (xpub, rep):
                sock.close(linger=0)
            self._ready.set()
            return
        self._ready.set()
        log.info("serving events on %s and commands on %s", self.pub_addr, self.rep_addr)
        poller = zmq.Poller()
        for sock in (xpub, rep):
            poller.register(sock, zmq.POLLIN)
        poller.register(self._bell_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(200))
                self._send_outbox(xpub)
                if rep in ready:
                    self._answer(rep)
                if xpub in ready:
                    self._subscription(xpub)
            self._send_outbox(xpub)  # what was published before stop
        finally:
            for sock in (xpub, rep):
                sock.close(linger=0)

    def _send_outbox(self, xpub: zmq.Socket) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                while os.read(self._bell_r, 4096):
                    pass
            except BlockingIOError:
                pass
            self._rung = False
            items = list(self._outbox)
            self._outbox.clear()
        for topic, seq, stamp, packed in items:
            if packed is None:
                packed = self._state_event(seq, stamp)
                if packed is None:
                    continue
            xpub.send_multipart([topic.encode(), packed])

    def _state_event(self, seq: int, stamp: float) -> bytes | None:
        try:
            return pack({"snapshot": self._snapshot(), "topic": "state", "seq": seq, "time": stamp})[0]
        except Exception:  # clients see the gap in seq and ask for get_state
            log.exception("could not build the state snapshot")
            return None

    def _subscription(self, xpub: zmq.Socket) -> None:
        frame = xpub.recv()
        if frame[:1] == b"\x01":  # a (re)subscription: send the state it needs to start from
            self.publish_snapshot()

    def _answer(self, rep: zmq.Socket) -> None:
        frames = rep.recv_multipart()
        reply = self._reply_for(frames)
        try:
            packed = msgpack.packb(reply, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            log.error("reply to %r could not be encoded: %s", reply.get("cmd"), exc)
            packed = msgpack.packb(error_reply("internal", "reply could not be encoded"), use_bin_type=True)
        rep.send(packed)

    def _reply_for(self, frames: list[bytes]) -> dict[str, Any]:
        if len(frames) != 1:
            return error_reply("bad_request", f"expected one frame, got {len(frames)}")
        raw = frames[0]
        if len(raw) > self._max_request:
            return error_reply("too_large", f"request is {len(raw)} bytes; the limit is {self._max_request}")
        try:
            request = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except Exception as exc:  # any decoding failure of untrusted bytes is a bad request
            return error_reply("bad_request", f"not a msgpack message ({type(exc).__name__})")
        if not isinstance(request, dict):
            return error_reply("bad_request", "request must be a map")
        if not isinstance(request.get("cmd"), str):
            return error_reply("bad_request", "request needs a string field 'cmd'")
        try:
            reply = self._handler(request)
        except RequestError as exc:
            return error_reply(exc.code, str(exc))
        except Exception:
            log.exception("command %r failed", request.get("cmd"))
            return error_reply("internal", f"command {request['cmd']!r} failed; see the backend log")
        return {"ok": True, **reply}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:  # a publisher racing this stop never writes to a closed (or reused) fd
            self._closed = True
            for fd in (self._bell_r, self._bell_w):
                os.close(fd)
        self._context.term()
