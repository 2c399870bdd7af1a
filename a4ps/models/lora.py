"""GGUF LoRA adapters over one loaded llama.cpp base, chosen per call by model name.

Why: every persona shares one base in memory (a second copy of a 1.1 GB model per persona would not
fit a small machine), yet a fine-tuned persona must speak with its own adapter and the others without
it. llama.cpp applies adapters at compute time (`llama_set_adapters_lora` on the context), so one
call can run with an adapter and the next without. The KV cache holds activations computed under the
adapter of its time: a call under another adapter must not reuse that prefix, so a change of adapter
empties it (`Llama.reset`: the next call reads its whole prompt again).
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a4ps.models.types import ModelError

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"


@dataclass
class _Lora:
    path: Path
    handle: Any = None  # llama_adapter_lora_p, valid while the model that loaded it lives


def check_adapter_file(path: Path) -> None:
    """A clear ModelError for a missing, empty or non-GGUF adapter file (llama.cpp's own check follows)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except FileNotFoundError:
        raise ModelError(f"LoRA adapter file not found: {path}") from None
    except OSError as exc:
        raise ModelError(f"LoRA adapter file {path} is unreadable ({exc.strerror})") from None
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelError(f"LoRA adapter file {path} is not a GGUF file (damaged or a different format)")


class LoraSet:
    """Name -> adapter; which adapter the context has now. The caller (EmbeddedProvider) holds its lock."""

    def __init__(self) -> None:
        self._loras: dict[str, _Lora] = {}
        self._active: Any = None  # the handle set on the context, None: the bare base

    def names(self) -> dict[str, str]:
        return {name: str(lora.path) for name, lora in self._loras.items()}

    def label(self, model: str, base_label: str) -> str:
        lora = self._loras.get(model)
        return f"{base_label}+{lora.path.parent.name}" if lora else base_label

    def add(self, llm: Any, name: str, path: Path) -> None:
        """Load the adapter over `llm`'s model; ModelError (and nothing registered) if it cannot be."""
        check_adapter_file(path)
        lora = _Lora(path)
        self._init(llm, lora)
        old = self._loras.get(name)
        if old is not None and self._active is not None and old.handle is self._active:
            self._set(llm, None)  # a re-registered name must not keep the replaced adapter on the context
        self._loras[name] = lora
        log.info("LoRA adapter %s registered as %s", path, name)

    def drop(self, name: str) -> None:
        """Forget a variant (its memory goes with the model; adapters are small)."""
        self._loras.pop(name, None)

    def forget_loaded(self) -> None:
        """The model is being closed: its adapters go with it; they are loaded again on next use."""
        for lora in self._loras.values():
            lora.handle = None
        self._active = None

    def select(self, llm: Any, model: str) -> None:
        """Put the adapter of `model` (none for a name that is not a variant) on the context."""
        lora = self._loras.get(model)
        if lora is not None and lora.handle is None:
            self._init(llm, lora)  # the model was reloaded since
        wanted = lora.handle if lora is not None else None
        if wanted is self._active:  # the very handle object stored here
            return
        self._set(llm, wanted)

    def _init(self, llm: Any, lora: _Lora) -> None:
        import llama_cpp

        check_adapter_file(lora.path)
        handle = llama_cpp.llama_adapter_lora_init(llm.model, str(lora.path).encode("utf-8"))
        if not handle:
            raise ModelError(f"llama.cpp refused the LoRA adapter {lora.path}: not a LoRA for this base model, "
                             "or a damaged file (see the log of llama.cpp above)")
        lora.handle = handle

    def _set(self, llm: Any, handle: Any) -> None:
        import llama_cpp

        if handle is None:
            status = llama_cpp.llama_set_adapters_lora(llm.ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
            scales = (ctypes.c_float * 1)(1.0)
            status = llama_cpp.llama_set_adapters_lora(llm.ctx, adapters, 1, scales)
        if status:
            raise ModelError(f"llama.cpp could not switch LoRA adapters (status {status})")
        self._active = handle
        llm.reset()  # the cached prefix was computed under the previous adapter
