"""Ollama provider: the official `ollama` client, structured output via `format=<schema>`.

Sequential residency for small GPUs: before a model is used, every other resident model is
unloaded (keep_alive=0), and the model in use is kept for `keep_alive`.

A chat streams on the async client in a short-lived event loop, so that a Stop can end it at any
moment: `Sampling.should_stop` is asked every STOP_POLL_S while the answer is awaited (Ollama may
load a model or read a long prompt for many seconds before its first token) and after every chunk;
once it says stop, the request is cancelled, which closes its HTTP connection (Ollama then stops
generating), and the call raises ModelCancelled.

Variants (a4ps/adapters' swap): a PEFT adapter becomes a new tag FROM the base model, made with the
client's `create_blob` (each adapter file uploaded, addressed by its sha256) and `create(model=...,
from_=base, adapters={file name: digest})`; the persona then simply names that tag.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar

import httpx
import ollama

from a4ps.config.schema import OllamaModel
from a4ps.models.types import ChatResult, ModelCancelled, ModelError, Sampling, TokenCallback

log = logging.getLogger(__name__)

_ERRORS = (ollama.ResponseError, httpx.HTTPError, ConnectionError, OSError)
# How often a streaming chat asks Sampling.should_stop while it waits for Ollama.
STOP_POLL_S = 0.05
T = TypeVar("T")


def probe(host: str | None, timeout_s: float) -> tuple[bool, list[str], str]:
    """(answers, model names, reason) for the Ollama server at host (None: OLLAMA_HOST)."""
    client = ollama.Client(host=host or None, timeout=timeout_s)
    try:
        listed = client.list()
    except _ERRORS as exc:
        return False, [], f"no Ollama server answered at {client._client.base_url} ({type(exc).__name__})"
    names = [m.model for m in listed.models if m.model]
    return True, names, f"Ollama answered at {client._client.base_url} with {len(names)} model(s)"


class OllamaProvider:
    """Chat/embed through an Ollama server."""

    name = "ollama"

    def __init__(self, config: OllamaModel):
        self._config = config
        self._client = ollama.Client(host=config.host or None, timeout=config.request_timeout_s)
        self._tls = httpx.create_ssl_context()  # made once: each chat's async client would take ~30 ms
        self._lock = threading.RLock()
        self._resident: str | None = None

    @property
    def host(self) -> str:
        return str(self._client._client.base_url)

    def _make_resident(self, model: str) -> None:
        """Unload every other loaded model so only `model` occupies the GPU."""
        if self._resident == model:
            return
        try:
            loaded = self._client.ps().models
        except _ERRORS as exc:
            raise ModelError(f"Ollama at {self.host}: cannot list loaded models ({exc})") from exc
        for running in loaded:
            if running.model and running.model != model:
                self.unload(running.model)
        self._resident = model

    def chat(
        self,
        model: str,
        messages: list[dict],
        schema: dict | None,
        sampling: Sampling,
        on_token: TokenCallback | None,
    ) -> ChatResult:
        should_stop = sampling.should_stop
        with self._lock:
            if should_stop is not None and should_stop():
                raise ModelCancelled("stopped before the request was sent")
            self._make_resident(model)
            started = time.perf_counter()
            request = {
                "model": model,
                "messages": messages,
                "format": schema,
                "stream": True,
                "keep_alive": self._config.keep_alive,
                "options": {
                    "temperature": sampling.temperature,
                    "top_p": sampling.top_p,
                    "num_predict": sampling.max_tokens,
                    "repeat_penalty": sampling.repeat_penalty,
                },
            }
            stream = _Stream(on_token, should_stop)
            try:
                _run(self._stream_chat(request, stream))
            except _ERRORS as exc:
                self._resident = None
                raise ModelError(f"Ollama at {self.host}, model {model}: {exc}") from exc
            return ChatResult(
                text="".join(stream.pieces),
                model=model,
                prompt_tokens=stream.prompt_tokens,
                completion_tokens=stream.completion_tokens or len(stream.pieces),
                seconds=time.perf_counter() - started,
                truncated=stream.done_reason == "length",
            )

    async def _stream_chat(self, request: dict[str, Any], stream: "_Stream") -> None:
        """One streamed chat on a client of its own (an async client's connections belong to one
        event loop); with should_stop, the stream runs as a task this coroutine cancels on a stop."""
        client = ollama.AsyncClient(host=self.host, timeout=self._config.request_timeout_s, verify=self._tls)
        try:
            if stream.should_stop is None:
                await stream.consume(client, request)
                return
            task = asyncio.ensure_future(stream.consume(client, request))
            while True:
                done, _ = await asyncio.wait({task}, timeout=STOP_POLL_S)
                if done:
                    task.result()  # raises what the stream raised
                    return
                if stream.should_stop():
                    task.cancel()  # closes the HTTP connection: Ollama stops working on it
                    try:
                        await task
                    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                        pass
                    raise ModelCancelled("stopped while waiting for Ollama"
                                         + (" (before its first token)" if not stream.pieces else ""))
        finally:
            await client._client.aclose()

    def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            response = self._client.embed(model=self._config.embed_model, input=texts, keep_alive=self._config.keep_alive)
        except _ERRORS as exc:
            raise ModelError(f"Ollama at {self.host}, embed model {self._config.embed_model}: {exc}") from exc
        return [list(vector) for vector in response.embeddings]

    def unload(self, model: str | None = None) -> None:
        with self._lock:
            target = model or self._resident
            if not target:
                return
            try:
                self._client.generate(model=target, prompt="", keep_alive=0)
            except _ERRORS as exc:
                log.warning("Ollama: could not unload %s (%s)", target, exc)
                return
            if target == self._resident:
                self._resident = None
            log.info("Ollama: unloaded %s", target)

    def describe(self) -> str:
        return f"Ollama at {self.host}"

    def add_variant(self, name: str, base: str, adapter_files: list[Path]) -> float:
        """Create tag `name` FROM `base` with the adapter files (safetensors and its config); returns
        the seconds it took. ModelError names the file or the server's refusal."""
        started = time.perf_counter()
        digests: dict[str, str] = {}
        for path in adapter_files:
            try:
                digests[path.name] = self._client.create_blob(path)
            except FileNotFoundError:
                raise ModelError(f"adapter file not found: {path}") from None
            except _ERRORS as exc:
                raise ModelError(f"Ollama at {self.host} did not take the adapter file {path}: {exc}") from exc
        try:
            response = self._client.create(model=name, from_=base, adapters=digests)
        except _ERRORS as exc:
            raise ModelError(f"Ollama at {self.host} could not create {name} from {base} with the adapter: "
                             f"{exc}") from exc
        if response.status != "success":
            raise ModelError(f"Ollama at {self.host} answered {response.status!r} to creating {name}")
        log.info("Ollama: created %s from %s with adapter %s", name, base, ", ".join(digests))
        return time.perf_counter() - started


class _Stream:
    """What one streamed chat has received so far (its text and the final token counts)."""

    def __init__(self, on_token: TokenCallback | None, should_stop: Callable[[], bool] | None):
        self.on_token, self.should_stop = on_token, should_stop
        self.pieces: list[str] = []
        self.prompt_tokens = self.completion_tokens = 0
        self.done_reason = ""

    async def consume(self, client: ollama.AsyncClient, request: dict[str, Any]) -> None:
        parts = await client.chat(**request)
        try:
            async for part in parts:
                piece = part.message.content if part.message else None
                if piece:
                    self.pieces.append(piece)
                    if self.on_token is not None:
                        self.on_token(piece)  # may raise to cancel: the stream is closed below
                if part.done:
                    self.prompt_tokens = part.prompt_eval_count or 0
                    self.completion_tokens = part.eval_count or 0
                    self.done_reason = part.done_reason or ""
                elif self.should_stop is not None and self.should_stop():
                    raise ModelCancelled("stopped while the answer was streaming")
        finally:
            await parts.aclose()


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code (on a helper thread if this one already runs
    an event loop, which BAT OS's callers do not)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ollama-chat") as pool:
        return pool.submit(asyncio.run, coroutine).result()
