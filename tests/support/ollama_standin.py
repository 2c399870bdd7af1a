"""A stand-in Ollama server on 127.0.0.1 speaking Ollama's real HTTP API, for tests only.

It implements /api/version, /api/tags, /api/ps, /api/chat (NDJSON streaming), /api/generate (used
to unload with keep_alive=0) and /api/embed, with keep_alive residency; and, for adapters,
/api/blobs/<digest> (HEAD: is it there; POST: upload, checked against its sha256) and /api/create
(a new model FROM a known one with adapters given as uploaded blobs' digests; it then chats). Answers come from a
responder the test gives (model, messages, format) -> content, so routing can be scripted while the
real `ollama` client is used unmodified.

It can also be slow, as a real server is while it loads a model or reads a long prompt: a streamed
chat may wait `first_token_delay_s` before its response starts (Ollama sends the headers with the
first token) and `chunk_delay_s` between chunks. Meanwhile it watches its client: a chat whose client
closed the connection is given up and recorded in `disconnects` (with the monotonic time it noticed).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import select
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Responder = Callable[[str, list[dict], Any], str]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _duration_seconds(keep_alive: Any) -> float | None:
    """Ollama's keep_alive: seconds (number) or a duration string like "5m"; negative = forever."""
    if keep_alive is None:
        return 300.0
    if isinstance(keep_alive, (int, float)):
        return None if keep_alive < 0 else float(keep_alive)
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", str(keep_alive))
    if not match:
        raise ValueError(f"invalid keep_alive {keep_alive!r}")
    value = float(match.group(1))
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return None if value < 0 else value * unit


class OllamaStandIn:
    """Run with `with OllamaStandIn(models=[...], responder=...) as server:`; server.host is the URL."""

    def __init__(self, models: list[str], responder: Responder | None = None, embed_dim: int = 16,
                 first_token_delay_s: float = 0.0, chunk_delay_s: float = 0.0):
        self.models = list(models)
        self.first_token_delay_s = first_token_delay_s
        self.chunk_delay_s = chunk_delay_s
        self.chats_started: list[float] = []  # monotonic time each streamed chat request arrived
        self.disconnects: list[float] = []  # monotonic time a client was seen gone mid-chat
        self.responder = responder or (lambda model, messages, fmt: json.dumps({"answer": "ok"}))
        self.embed_dim = embed_dim
        self.loaded: dict[str, float | None] = {}  # model -> expiry (monotonic) or None = forever
        self.requests: list[tuple[str, dict]] = []
        self.load_count: dict[str, int] = {}
        self.blobs: dict[str, bytes] = {}  # "sha256:<hex>" -> the uploaded bytes
        self.created: dict[str, dict] = {}  # model name -> the /api/create body that made it
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "OllamaStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- residency -------------------------------------------------------------------------------
    def _expire(self) -> None:
        now = time.monotonic()
        for model, expiry in list(self.loaded.items()):
            if expiry is not None and expiry <= now:
                del self.loaded[model]

    def _touch(self, model: str, keep_alive: Any) -> None:
        seconds = _duration_seconds(keep_alive)
        with self._lock:
            if model not in self.loaded:
                self.load_count[model] = self.load_count.get(model, 0) + 1
            if seconds == 0:
                self.loaded.pop(model, None)
            else:
                self.loaded[model] = None if seconds is None else time.monotonic() + seconds

    def resident(self) -> list[str]:
        with self._lock:
            self._expire()
            return sorted(self.loaded)

    def embedding(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        vector = [(b - 127.5) / 127.5 for b in digest[: self.embed_dim]]
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    # --- HTTP ------------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_HEAD(self) -> None:
                status = 200
                if self.path.startswith("/api/blobs/"):
                    server.requests.append(("HEAD " + self.path, {}))
                    status = 200 if self.path[len("/api/blobs/"):] in server.blobs else 404
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _blob(self) -> None:
                """POST /api/blobs/sha256:<hex>: the raw file; refused when its hash is not the name's."""
                digest = self.path[len("/api/blobs/"):]
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    data = self.rfile.read(length)
                actual = "sha256:" + hashlib.sha256(data).hexdigest()
                server.requests.append((self.path, {"bytes": len(data), "sha256": actual}))
                if actual != digest:
                    self._json(400, {"error": "digest mismatch"})
                    return
                server.blobs[digest] = data
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _create(self, body: dict) -> None:
                base, name = body.get("from"), body.get("model")
                missing = [d for d in (body.get("adapters") or {}).values() if d not in server.blobs]
                if base not in server.models:
                    self._json(404, {"error": f"base model '{base}' not found"})
                elif missing:
                    self._json(400, {"error": f"blob(s) not uploaded: {', '.join(missing)}"})
                elif not isinstance(name, str) or not name:
                    self._json(400, {"error": "missing model name"})
                else:
                    server.created[name] = body
                    if name not in server.models:
                        server.models.append(name)
                    self._json(200, {"status": "success"})

            def do_GET(self) -> None:
                server.requests.append((self.path, {}))
                if self.path == "/api/version":
                    self._json(200, {"version": "0.12.6"})
                elif self.path == "/api/tags":
                    self._json(200, {"models": [
                        {"name": m, "model": m, "modified_at": _now(), "size": 1_000_000,
                         "digest": hashlib.sha256(m.encode()).hexdigest(),
                         "details": {"format": "gguf", "family": "llama", "parameter_size": "1B",
                                     "quantization_level": "Q4_K_M"}} for m in server.models]})
                elif self.path == "/api/ps":
                    expires = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()
                    self._json(200, {"models": [
                        {"name": m, "model": m, "size": 1_000_000, "size_vram": 1_000_000,
                         "digest": hashlib.sha256(m.encode()).hexdigest(), "expires_at": expires}
                        for m in server.resident()]})
                else:
                    self._json(404, {"error": f"unknown path {self.path}"})

            def do_POST(self) -> None:
                if self.path.startswith("/api/blobs/"):
                    self._blob()
                    return
                try:
                    body = self._body()
                except json.JSONDecodeError:
                    self._json(400, {"error": "invalid JSON body"})
                    return
                server.requests.append((self.path, body))
                model = body.get("model", "")
                if self.path in ("/api/chat", "/api/generate", "/api/embed") and model not in server.models:
                    self._json(404, {"error": f"model '{model}' not found"})
                    return
                if self.path == "/api/chat":
                    self._chat(body)
                elif self.path == "/api/generate":
                    server._touch(model, body.get("keep_alive"))
                    self._json(200, {"model": model, "created_at": _now(), "response": "", "done": True,
                                     "done_reason": "unload" if body.get("keep_alive") == 0 else "load"})
                elif self.path == "/api/create":
                    self._create(body)
                elif self.path == "/api/embed":
                    server._touch(model, body.get("keep_alive"))
                    inputs = body.get("input")
                    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
                    self._json(200, {"model": model, "embeddings": [server.embedding(t) for t in inputs],
                                     "total_duration": 1000, "prompt_eval_count": len(inputs)})
                else:
                    self._json(404, {"error": f"unknown path {self.path}"})

            def _client_gone(self, wait_s: float) -> bool:
                """Wait up to wait_s; True (and recorded) as soon as the client closes its connection."""
                deadline = time.monotonic() + wait_s
                while True:
                    remaining = deadline - time.monotonic()
                    readable, _, _ = select.select([self.connection], [], [], max(0.0, min(remaining, 0.02)))
                    if readable:
                        try:
                            gone = self.connection.recv(1, socket.MSG_PEEK) == b""
                        except OSError:
                            gone = True
                        if gone:
                            server.disconnects.append(time.monotonic())
                            return True
                    if remaining <= 0:
                        return False

            def _chat(self, body: dict) -> None:
                model = body["model"]
                server._touch(model, body.get("keep_alive"))
                content = server.responder(model, body.get("messages", []), body.get("format"))
                pieces = [content[i:i + 4] for i in range(0, len(content), 4)] or [""]
                limit = (body.get("options") or {}).get("num_predict")  # a piece stands for a token here
                cut = bool(limit) and len(pieces) > limit
                pieces = pieces[:limit] if cut else pieces
                content = "".join(pieces)
                final = {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
                         "done": True, "done_reason": "length" if cut else "stop", "total_duration": 1_000_000,
                         "load_duration": 1000, "prompt_eval_count": 12, "prompt_eval_duration": 1000,
                         "eval_count": len(pieces), "eval_duration": 1000}
                if not body.get("stream", True):
                    final["message"]["content"] = content
                    self._json(200, final)
                    return
                server.chats_started.append(time.monotonic())
                if server.first_token_delay_s and self._client_gone(server.first_token_delay_s):
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                lines = [{"model": model, "created_at": _now(), "message": {"role": "assistant", "content": p},
                          "done": False} for p in pieces] + [final]
                for index, line in enumerate(lines):
                    if index and server.chunk_delay_s and self._client_gone(server.chunk_delay_s):
                        self.close_connection = True
                        return
                    raw = (json.dumps(line) + "\n").encode()
                    try:
                        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                        self.wfile.flush()
                    except OSError:  # the client went away while we wrote
                        server.disconnects.append(time.monotonic())
                        self.close_connection = True
                        return
                self.wfile.write(b"0\r\n\r\n")

        return Handler
