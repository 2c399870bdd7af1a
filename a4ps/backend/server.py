"""ZeroMQ front door: XPUB for events (a snapshot on every join) and REP for commands.

One thread owns both sockets. Other threads hand events over an inproc PUSH/PULL pair (a socket
per thread), so publishing never touches a socket owned by another thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import msgpack
import zmq

from a4ps.config.loader import bind_address_problem
from a4ps.events import Event

log = logging.getLogger(__name__)

HWM = 100_000
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class RequestError(Exception):
    """A command cannot be served; `code` goes into the error reply."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def error_reply(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "error": message}


class ZmqServer:
    """Serves commands through `handler` and publishes events handed to `publish`."""

    def __init__(self, pub_addr: str, rep_addr: str, max_request_bytes: int, handler: Handler,
                 on_join: Callable[[], None], allow_remote: bool = False):
        self.pub_addr, self.rep_addr = pub_addr, rep_addr
        self._allow_remote = allow_remote
        self._max_request = max_request_bytes
        self._handler = handler
        self._on_join = on_join
        self._context = zmq.Context()
        self._inbox_addr = f"inproc://a4ps-events-{id(self)}"
        self._local = threading.local()
        self._pushers: list[zmq.Socket] = []
        self._pushers_lock = threading.Lock()
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

    def publish(self, event: Event) -> None:
        """Thread-safe: queue an event for the XPUB socket."""
        if self._stop.is_set():
            return
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self._context.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, HWM)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self._inbox_addr)
            self._local.push = sock
            with self._pushers_lock:
                self._pushers.append(sock)
        try:
            sock.send(msgpack.packb(event.as_map(), use_bin_type=True, default=str), zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # queue full or context closing: an event is lost, never the thread
            log.debug("event %s dropped: %s", event.topic, exc)

    def _serve(self) -> None:
        ctx = self._context
        inbox = ctx.socket(zmq.PULL)
        inbox.setsockopt(zmq.RCVHWM, HWM)
        inbox.bind(self._inbox_addr)
        xpub, rep = ctx.socket(zmq.XPUB), ctx.socket(zmq.REP)
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
            for sock in (inbox, xpub, rep):
                sock.close(linger=0)
            self._ready.set()
            return
        self._ready.set()
        log.info("serving events on %s and commands on %s", self.pub_addr, self.rep_addr)
        poller = zmq.Poller()
        for sock in (inbox, xpub, rep):
            poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(200))
                if rep in ready:
                    self._answer(rep)
                if xpub in ready:
                    self._subscription(xpub)
                if inbox in ready:
                    for _ in range(1000):  # bounded, so commands are never starved
                        try:
                            raw = inbox.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._forward(xpub, raw)
            while True:  # flush what was published before stop
                try:
                    self._forward(xpub, inbox.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
        finally:
            for sock in (inbox, xpub, rep):
                sock.close(linger=0)

    @staticmethod
    def _forward(xpub: zmq.Socket, raw: bytes) -> None:
        topic = msgpack.unpackb(raw, raw=False).get("topic", "")
        xpub.send_multipart([topic.encode(), raw])

    def _subscription(self, xpub: zmq.Socket) -> None:
        frame = xpub.recv()
        if frame[:1] == b"\x01":  # a (re)subscription: send the state it needs to start from
            try:
                self._on_join()
            except Exception:
                log.exception("could not publish the join snapshot")

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
        with self._pushers_lock:
            for sock in self._pushers:
                sock.close(linger=0)
        self._context.term()
