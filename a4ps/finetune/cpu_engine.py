"""The CPU engine: the embedded model's own GGUF weights, dequantized by transformers, with PEFT LoRA.

Why from the GGUF: the adapter must fit the very base llama.cpp runs, and no model hub is reachable;
transformers reads a GGUF (`from_pretrained(folder, gguf_file=name)`) into float32 torch weights.
Pitfall (../shared/FACTS.md): such a model stays marked "quantized with gguf" and refuses to save;
`plain_model` rebuilds it from its config without the mark, sharing the same tensors (no copy).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from a4ps.finetune.sft import Emit, lora_arguments, sft_arguments, train
from a4ps.finetune.spec import JobSpec

log = logging.getLogger(__name__)


def torch_threads(configured: int) -> int:
    return configured or os.cpu_count() or 1


def load_tokenizer(base: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ValueError(f"{base.name} carries no chat template; a chat fine-tune needs one")
    return tokenizer


def plain_model(model: Any) -> Any:
    """The same weights in a model of the same class that transformers does not mark as quantized."""
    import torch

    config = model.config
    if getattr(config, "quantization_config", None) is None and not getattr(model, "is_quantized", False):
        return model
    config.quantization_config = None
    if hasattr(config, "__dict__"):
        config.__dict__.pop("quantization_config", None)
    with torch.device("meta"):
        clean = type(model)(config)
    clean.load_state_dict(model.state_dict(), assign=True)
    for name, buffer in model.named_buffers():  # the non-persistent ones (rotary tables) are not in a state dict
        owner, _, leaf = name.rpartition(".")
        module = clean.get_submodule(owner) if owner else clean
        if module._buffers.get(leaf) is None or module._buffers[leaf].is_meta:
            module._buffers[leaf] = buffer
    clean.tie_weights()
    clean.generation_config = model.generation_config
    return clean.to(torch.float32)


def load_base(base: Path, threads: int = 0) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 from the base GGUF."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(torch_threads(threads))
    tokenizer = load_tokenizer(base)
    model = AutoModelForCausalLM.from_pretrained(str(base.parent), gguf_file=base.name, dtype=torch.float32)
    return plain_model(model), tokenizer


def train_cpu(spec: JobSpec, records: list[dict[str, Any]], out: Path, emit: Emit) -> dict[str, Any]:
    """Train on CPU and save the PEFT adapter (adapter_model.safetensors + adapter_config.json) in `out`."""
    from peft import LoraConfig

    emit({"event": "phase", "phase": "load"})
    started = time.perf_counter()
    model, tokenizer = load_base(Path(spec.base_model), spec.threads)
    load_s = time.perf_counter() - started
    emit({"event": "phase", "phase": "train"})
    work = out / "trainer"
    result = train(model, tokenizer, records, sft_arguments(spec, work, cuda=False), emit,
                   peft_config=LoraConfig(**lora_arguments(spec)))
    result.pop("model").save_pretrained(str(out), safe_serialization=True)
    shutil.rmtree(work, ignore_errors=True)
    return {**result, "load_s": round(load_s, 3)}


def export_hf(base: Path, folder: Path) -> Path:
    """The base as a transformers folder (safetensors + tokenizer), written once and atomically (the
    CUDA engine's Unsloth loads a folder, not a GGUF)."""
    if (folder / "config.json").is_file():
        return folder
    temp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    model, tokenizer = load_base(base)
    model.save_pretrained(str(temp), safe_serialization=True)
    tokenizer.save_pretrained(str(temp))
    del model
    os.replace(temp, folder)
    return folder
