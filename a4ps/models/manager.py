"""ModelManager: the one interface the rest of BAT OS uses to talk to models.

It picks the provider (auto/embedded/ollama), asks for schema-constrained JSON, validates it, and
asks again with the validation error when the answer is invalid.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Protocol

from a4ps.config.schema import Models
from a4ps.models.embedded import EmbeddedProvider
from a4ps.models.ollama_provider import OllamaProvider, probe
from a4ps.models.structured import FieldStreamer, parse_and_validate
from a4ps.models.types import (ChatResult, ModelCancelled, ModelError, Sampling, StructuredOutputError,
                               TokenCallback)

log = logging.getLogger(__name__)

Embedder = Callable[[list[str]], list[list[float]]]


class Provider(Protocol):
    name: str

    def chat(self, model: str, messages: list[dict], schema: dict | None, sampling: Sampling,
             on_token: TokenCallback | None) -> ChatResult: ...

    def unload(self, model: str | None = None) -> None: ...

    def describe(self) -> str: ...


def select_provider(config: Models, required_models: set[str]) -> tuple[Provider, str]:
    """Build the configured provider; for `auto`, Ollama only if it answers and has every model."""
    if config.provider == "embedded":
        return EmbeddedProvider(config.embedded), "models.provider = embedded"
    answers, names, reason = probe(config.ollama.host, config.ollama.probe_timeout_s)
    if config.provider == "ollama":
        if not answers:
            raise ModelError(f"models.provider = ollama, but {reason}")
        return OllamaProvider(config.ollama), f"models.provider = ollama; {reason}"
    if not answers:
        return EmbeddedProvider(config.embedded), f"auto: {reason}; using the embedded model"
    have = set(names) | {n.split(":")[0] for n in names if n.endswith(":latest")}
    missing = sorted(m for m in required_models if m not in have)
    if missing:
        return EmbeddedProvider(config.embedded), f"auto: {reason} but lacks {', '.join(missing)}; using the embedded model"
    return OllamaProvider(config.ollama), f"auto: {reason}, all persona models present"


def _field_tokens(field: str, on_token: TokenCallback) -> TokenCallback:
    """A token callback that passes on only the decoded text of one JSON field."""
    streamer = FieldStreamer(field)

    def callback(piece: str) -> None:
        shown = streamer.feed(piece)
        if shown:
            on_token(shown)

    return callback


def _stoppable(on_token: TokenCallback | None, should_stop: Callable[[], bool]) -> TokenCallback:
    """A token callback that asks should_stop on every raw piece the provider streams (also the pieces
    of JSON around a streamed field, and when the caller shows nothing) and aborts with ModelCancelled."""

    def callback(piece: str) -> None:
        if should_stop():
            raise ModelCancelled("stopped while the answer was streaming")
        if on_token is not None:
            on_token(piece)

    return callback


class ModelManager:
    """chat (optionally schema-constrained and streamed), embed, unload — whatever the provider."""

    def __init__(self, provider: Provider, *, json_retries: int = 2, reason: str = "",
                 embedder: Embedder | None = None):
        self.provider = provider
        self.reason = reason
        self._json_retries = json_retries
        self._embedder = embedder

    @property
    def provider_name(self) -> str:
        return self.provider.name

    @property
    def one_model(self) -> str | None:
        """The model every persona runs when the provider runs only one (embedded), else None."""
        return getattr(self.provider, "one_model", None)

    def set_embedder(self, embedder: Embedder) -> None:
        """The embedded provider's embeddings come from a real embedding model (memory organ)."""
        self._embedder = embedder

    def chat(
        self,
        messages: list[dict],
        *,
        model: str,
        schema: dict | None = None,
        sampling: Sampling | None = None,
        on_token: TokenCallback | None = None,
        stream_field: str | None = None,
        on_retry: Callable[[int, str], None] | None = None,
    ) -> ChatResult:
        """Ask the model. With `schema`, the result's `data` is a validated object.

        on_token receives generated text; with stream_field it receives only the decoded text of
        that top-level string field (what a person should read), not the JSON around it. With
        sampling.should_stop, a stop aborts the call with ModelCancelled: it is asked on every raw
        piece, before every re-ask, and by the provider while it waits (prefill, first token).
        """
        sampling = sampling or Sampling()
        history = list(messages)
        last_error = ""
        total_seconds = 0.0
        for attempt in range(1, self._json_retries + 2):
            callback = on_token
            if on_token is not None and stream_field and schema:
                callback = _field_tokens(stream_field, on_token)  # a fresh decoder per attempt
            if sampling.should_stop is not None:
                if sampling.should_stop():
                    raise ModelCancelled("stopped before the model was asked" if attempt == 1
                                         else "stopped before the model was asked again")
                callback = _stoppable(callback, sampling.should_stop)

            result = self.provider.chat(model, history, schema, sampling, callback)
            total_seconds += result.seconds
            result.attempts = attempt
            result.seconds = total_seconds
            if schema is None:
                return result
            try:
                result.data = parse_and_validate(result.text, schema)
                return result
            except StructuredOutputError as exc:
                last_error = str(exc)
                log.warning("model %s: %s (attempt %d)", model, last_error, attempt)
                if on_retry is not None:
                    on_retry(attempt, last_error)
                history = list(messages) + [
                    {"role": "assistant", "content": result.text[:2000]},
                    {"role": "user", "content": f"That answer was rejected: {last_error}. Answer again with "
                                                 f"one JSON object matching this schema: {json.dumps(schema)}"},
                ]
        raise StructuredOutputError(f"{model}: no valid answer after {self._json_retries + 1} attempts ({last_error})")

    def embed(self, texts: list[str]) -> list[list[float]]:
        if isinstance(self.provider, OllamaProvider):
            return self.provider.embed(texts)
        if self._embedder is None:
            raise ModelError("no embedding model is configured for the embedded provider")
        return self._embedder(texts)

    def unload(self, model: str | None = None) -> None:
        self.provider.unload(model)

    def make_variant(self, name: str, *, base: str, lora_gguf: Path, peft_files: list[Path]) -> float:
        """Make model `name` = `base` + a LoRA adapter, ready to be named in chat; returns seconds.

        Embedded: the GGUF LoRA over the one loaded base, applied only to calls naming `name`.
        Ollama: a new tag FROM `base` with the PEFT files. ModelError (nothing made) when the adapter
        is missing, damaged or refused."""
        if isinstance(self.provider, EmbeddedProvider):
            return self.provider.add_variant(name, lora_gguf)
        if isinstance(self.provider, OllamaProvider):
            return self.provider.add_variant(name, base, peft_files)
        raise ModelError(f"the {self.provider.name} provider cannot make a variant with an adapter")

    def drop_variant(self, name: str) -> None:
        """Embedded: forget the variant (an Ollama tag stays on the server, to roll back to)."""
        if isinstance(self.provider, EmbeddedProvider):
            self.provider.drop_variant(name)
