"""ZeroMQ REQ and SUB endpoints that never hang: timeouts, lazy reconnect, msgpack maps."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

HWM = 100_000
CONTROL_TOKEN_FILE = "control.token"


def control_token_path(data_dir: Path | str) -> Path:
    """Where the backend keeps the token that state-changing commands carry (docs/protocol.md)."""
    return Path(data_dir) / CONTROL_TOKEN_FILE


def read_token(path: Path | None) -> str | None:
    """The control token, or None when the file is absent or unreadable (reading commands still work)."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class BackendUnavailable(ConnectionError):
    """The backend did not answer within the timeout."""


class Requester:
    """Sends commands over REQ; a timed-out socket is replaced so the next call starts clean.

    With `token_file`, every request carries the control token read from it at send time (so a
    client started before the backend created it still works). Thread-safe: one request at a time.
    """

    def __init__(self, address: str, timeout_s: float = 5.0, context: zmq.Context | None = None,
                 token_file: Path | None = None):
        self.address = address
        self.timeout_s = timeout_s
        self.token_file = token_file
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self._lock = threading.Lock()

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            sock = self._context.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.REQ_RELAXED, 1)
            sock.setsockopt(zmq.REQ_CORRELATE, 1)
            sock.connect(self.address)
            self._socket = sock
        return self._socket

    def _drop(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def request(self, cmd: str, timeout_s: float | None = None, **args: Any) -> dict:
        """Send {cmd, **args}; return the reply map (which has `ok`). Raises BackendUnavailable."""
        token = read_token(self.token_file)
        if token is not None and "token" not in args:
            args["token"] = token
        payload = msgpack.packb({"cmd": cmd, **args}, use_bin_type=True)
        return self.request_raw(payload, timeout_s)

    def request_raw(self, frames: bytes | list[bytes], timeout_s: float | None = None) -> dict:
        """Send raw frames (used by tests to send malformed requests); return the decoded reply."""
        timeout_ms = int(1000 * (self.timeout_s if timeout_s is None else timeout_s))
        with self._lock:
            sock = self._connect()
            if isinstance(frames, (bytes, bytearray)):
                sock.send(frames)
            else:
                sock.send_multipart(frames)
            if not sock.poll(timeout_ms, zmq.POLLIN):
                self._drop()
                raise BackendUnavailable(f"no reply from {self.address} within {timeout_ms} ms")
            raw = sock.recv()
        reply = msgpack.unpackb(raw, raw=False)
        if not isinstance(reply, dict):
            raise BackendUnavailable(f"reply from {self.address} is not a map")
        return reply

    def close(self) -> None:
        with self._lock:
            self._drop()


class EventSubscriber:
    """SUB socket for the backend's events; `poll_event` never blocks longer than asked."""

    def __init__(self, address: str, topics: tuple[str, ...] = ("",), context: zmq.Context | None = None):
        self.address = address
        self._socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, HWM)
        for topic in topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.connect(address)

    def poll_event(self, timeout_s: float = 0.0) -> tuple[str, dict] | None:
        """The next (topic, event) or None when nothing arrives within timeout_s."""
        if not self._socket.poll(int(timeout_s * 1000), zmq.POLLIN):
            return None
        frames = self._socket.recv_multipart()
        if len(frames) != 2:
            return None
        try:
            event = msgpack.unpackb(frames[1], raw=False)
        except (ValueError, msgpack.UnpackException):
            return None
        if not isinstance(event, dict):
            return None
        return frames[0].decode("utf-8", "replace"), event

    def drain(self, limit: int = 1000) -> list[tuple[str, dict]]:
        """Every event already waiting (up to limit), without blocking."""
        events = []
        while len(events) < limit:
            item = self.poll_event(0.0)
            if item is None:
                break
            events.append(item)
        return events

    def wait_for(self, topic: str, timeout_s: float) -> dict | None:
        """Block until an event of `topic` arrives (others are dropped); None on timeout."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            item = self.poll_event(left)
            if item and item[0] == topic:
                return item[1]
        return None

    def close(self) -> None:
        self._socket.close(linger=0)
