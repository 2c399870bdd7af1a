"""Embedded provider: llama.cpp running one GGUF in process (Qwen2.5-Coder-1.5B by default).

The file comes from the model catalog (assembled and verified on first use) or from
`models.embedded.model_path`. One loaded model is shared by all personas (a lock serialises calls);
JSON output is enforced by a GBNF grammar derived from the requested schema.

Variants (a4ps/adapters' swap): a GGUF LoRA registered under a model name is applied, through
llama.cpp's adapter API, to the calls that name it and to no other; the base stays loaded once.
The prefix cache is only reused under the adapter that computed it (a4ps/models/lora.py).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from a4ps.config.schema import EmbeddedModel
from a4ps.models import catalog
from a4ps.models.lora import LoraSet
from a4ps.models.structured import schema_to_gbnf
from a4ps.models.types import ChatResult, ModelCancelled, ModelError, Sampling, TokenCallback

log = logging.getLogger(__name__)


def resolve_model_path(config: EmbeddedModel, progress: catalog.Progress | None = None) -> Path:
    """model_path when set (it must exist), else the catalog model, assembled on first use."""
    if config.model_path:
        path = Path(config.model_path)
        if not path.is_file():
            raise ModelError(f"embedded model file not found: {path} (settings key models.embedded.model_path)")
        return path
    return catalog.ensure_model(config.model, config.models_dir, progress)


def thread_count(configured: int) -> int:
    """0: every core on a machine of two or fewer (one thread halves the speed there), else one less
    than the CPU count, which leaves a core for the UI, the sockets and the sandbox."""
    cores = os.cpu_count() or 2
    return configured or (cores if cores <= 2 else cores - 1)


def _common_prefix(first: list[int], second: list[int]) -> int:
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


class EmbeddedProvider:
    """llama-cpp-python over one GGUF; loads lazily on first use and unloads on request."""

    name = "embedded"

    def __init__(self, config: EmbeddedModel):
        self._config = config
        self._path: Path | None = None
        self._llm: Any = None
        self._lock = threading.RLock()
        self._grammars: dict[str, Any] = {}
        self._loras = LoraSet()

    @property
    def model_path(self) -> Path:
        """The GGUF file; the first call may assemble a catalog model (logged progress, seconds)."""
        with self._lock:
            if self._path is None:
                self._path = resolve_model_path(self._config)
            return self._path

    def load(self) -> Any:
        """Load the model now (idempotent); returns the llama_cpp.Llama."""
        with self._lock:
            if self._llm is None:
                from llama_cpp import Llama

                path = self.model_path
                if not path.is_file():
                    raise ModelError(f"embedded model file not found: {path}")
                started = time.perf_counter()
                try:
                    self._llm = Llama(
                        model_path=str(path),
                        use_mmap=self._config.use_mmap,
                        n_ctx=self._config.n_ctx,
                        n_threads=thread_count(self._config.n_threads),
                        n_threads_batch=thread_count(self._config.n_threads),
                        seed=self._config.seed,
                        verbose=False,
                    )
                except (ValueError, RuntimeError) as exc:
                    raise ModelError(f"cannot load {path}: {exc}") from exc
                log.info("embedded model %s loaded in %.2f s", path.name, time.perf_counter() - started)
            return self._llm

    def add_variant(self, name: str, adapter_gguf: Path) -> float:
        """Register `name` as the base plus this GGUF LoRA, loaded now (the model too, if it was not),
        so a bad file fails here and not in a persona's turn; returns the seconds it took."""
        with self._lock:
            started = time.perf_counter()
            self._loras.add(self.load(), name, Path(adapter_gguf))
            return time.perf_counter() - started

    def drop_variant(self, name: str) -> None:
        with self._lock:
            self._loras.drop(name)

    def variants(self) -> dict[str, str]:
        """Model name -> adapter file, for display."""
        with self._lock:
            return self._loras.names()

    def _grammar(self, schema: dict | None, layout: str | None) -> Any:
        """The compiled grammar for a JSON schema, else for a prose layout, else None (cached)."""
        from llama_cpp import LlamaGrammar

        if schema is None and not layout:
            return None
        key = json.dumps(schema, sort_keys=True) if schema is not None else layout
        if key not in self._grammars:
            text = schema_to_gbnf(schema) if schema is not None else layout
            try:
                self._grammars[key] = LlamaGrammar.from_string(text, verbose=False)
            except ValueError as exc:
                raise ModelError(f"invalid grammar: {exc}") from exc
        return self._grammars[key]

    def chat(
        self,
        model: str,
        messages: list[dict],
        schema: dict | None,
        sampling: Sampling,
        on_token: TokenCallback | None,
    ) -> ChatResult:
        with self._lock:
            llm = self.load()
            grammar = self._grammar(schema, sampling.layout)
            self._loras.select(llm, model)  # this call's adapter (none for a base name); may drop the cache
            started = time.perf_counter()
            cached = [int(t) for t in llm.input_ids[: llm.n_tokens]]  # what the KV cache holds now
            pieces: list[str] = []
            first_piece_s = None
            finish = None
            stream = llm.create_chat_completion(
                messages=messages,
                stream=True,
                grammar=grammar,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                repeat_penalty=sampling.repeat_penalty,
            )
            abort = self._abort_while_reading(llm, sampling.should_stop)
            try:
                for chunk in stream:
                    finish = chunk["choices"][0].get("finish_reason") or finish
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        if first_piece_s is None:
                            first_piece_s = time.perf_counter() - started
                            abort.release()  # from here on the token callback can stop it
                        pieces.append(piece)
                        if on_token is not None:
                            on_token(piece)  # may raise to cancel: the stream is closed below
            except ModelCancelled:  # raised by the token callback on a stop (a RuntimeError too)
                raise
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise ModelError(f"embedded model refused the request: {exc}") from exc
            except RuntimeError as exc:
                if abort.fired:
                    raise ModelCancelled("stopped while reading the prompt") from exc
                raise ModelError(f"embedded model failed: {exc}") from exc
            finally:
                abort.release()
                stream.close()
            # The prompt is what llama.cpp evaluated minus the generated tokens it fed back (all but the last).
            evaluated = [int(t) for t in llm.input_ids[: llm.n_tokens]]
            prompt_tokens = max(0, len(evaluated) - max(0, len(pieces) - 1))
            reused = min(_common_prefix(cached, evaluated), prompt_tokens)
            return ChatResult(
                text="".join(pieces),
                model=self._loras.label(model, self.model_path.name),
                prompt_tokens=prompt_tokens,
                completion_tokens=len(pieces),
                seconds=time.perf_counter() - started,
                extra={"reused_prompt_tokens": reused, "first_token_s": first_piece_s},
                truncated=finish == "length",
            )

    @staticmethod
    def _abort_while_reading(llm: Any, should_stop: Callable[[], bool] | None) -> "_PrefillAbort":
        return _PrefillAbort(llm, should_stop)

    def unload(self, model: str | None = None) -> None:
        with self._lock:
            if self._llm is not None:
                self._loras.forget_loaded()  # llama.cpp frees adapters with their model
                self._llm.close()
                self._llm = None
                log.info("embedded model unloaded")

    @property
    def one_model(self) -> str:
        """The one model every persona runs here (the codex's per-persona names do not apply): the
        catalog name, or the GGUF file's name for models.embedded.model_path."""
        return Path(self._config.model_path).name if self._config.model_path else self._config.model

    def describe(self) -> str:
        """Which model, without assembling or loading anything."""
        if self._config.model_path:
            return f"llama.cpp {Path(self._config.model_path).name} (models.embedded.model_path)"
        entry = catalog.get(self._config.model)
        return f"llama.cpp {entry.title} ({entry.name}, {entry.licence})"


class _PrefillAbort:
    """llama.cpp's abort callback, installed while the prompt is read: the only phase in which no token
    callback runs (a long prompt takes seconds on a CPU). Removed at the first token, since asking
    Python between every compute step of every token would slow generation for nothing."""

    def __init__(self, llm: Any, should_stop: Callable[[], bool] | None):
        import llama_cpp

        self.fired = False
        self._api, self._ctx, self._callback = llama_cpp, None, None
        if should_stop is None:
            return

        def check(_data: Any) -> bool:
            if should_stop():
                self.fired = True
            return self.fired

        self._callback = llama_cpp.ggml_abort_callback(check)  # kept referenced while installed
        self._ctx = llm.ctx
        llama_cpp.llama_set_abort_callback(self._ctx, self._callback, None)

    def release(self) -> None:
        if self._ctx is not None:
            self._api.llama_set_abort_callback(self._ctx, self._api.ggml_abort_callback(0), None)
            self._ctx = None
