"""Ollama provider: the official `ollama` client, structured output via `format=<schema>`.

Sequential residency for small GPUs: before a model is used, every other resident model is
unloaded (keep_alive=0), and the model in use is kept for `keep_alive`.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx
import ollama

from a4ps.config.schema import OllamaModel
from a4ps.models.types import ChatResult, ModelError, Sampling, TokenCallback

log = logging.getLogger(__name__)

_ERRORS = (ollama.ResponseError, httpx.HTTPError, ConnectionError, OSError)


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
        with self._lock:
            self._make_resident(model)
            started = time.perf_counter()
            pieces: list[str] = []
            prompt_tokens = completion_tokens = 0
            try:
                stream = self._client.chat(
                    model=model,
                    messages=messages,
                    format=schema,
                    stream=True,
                    keep_alive=self._config.keep_alive,
                    options={
                        "temperature": sampling.temperature,
                        "top_p": sampling.top_p,
                        "num_predict": sampling.max_tokens,
                        "repeat_penalty": sampling.repeat_penalty,
                    },
                )
                for part in stream:
                    piece = part.message.content if part.message else None
                    if piece:
                        pieces.append(piece)
                        if on_token is not None:
                            on_token(piece)
                    if part.done:
                        prompt_tokens = part.prompt_eval_count or 0
                        completion_tokens = part.eval_count or 0
            except _ERRORS as exc:
                self._resident = None
                raise ModelError(f"Ollama at {self.host}, model {model}: {exc}") from exc
            return ChatResult(
                text="".join(pieces),
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens or len(pieces),
                seconds=time.perf_counter() - started,
            )

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
