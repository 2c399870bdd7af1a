"""The CUDA engine: Unsloth's FastLanguageModel with the same SFTTrainer, when torch sees a GPU.

Why Unsloth there: its fused kernels make a LoRA on a consumer GPU minutes, not hours. It loads a
transformers folder, so the base GGUF is first exported once to `<data_dir>/finetune/hf_base/`
(a4ps/finetune/cpu_engine.py `export_hf`): the adapter still fits the very base llama.cpp runs. The
adapter is saved as safetensors (what Ollama's ADAPTER takes) and converted like the CPU one.
Not run on the development machines (no GPU): the argument builders are tested there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from a4ps.finetune.sft import Emit, lora_alpha, sft_arguments, train, TARGET_MODULES
from a4ps.finetune.spec import FINETUNE, JobSpec


def hf_base_dir(spec: JobSpec) -> Path:
    base = Path(spec.base_model)
    return Path(spec.data_dir) / FINETUNE / "hf_base" / f"{base.stem}-{base.stat().st_size}"


def load_arguments(spec: JobSpec, folder: Path) -> dict[str, Any]:
    """FastLanguageModel.from_pretrained's arguments: 16-bit LoRA over the exported base."""
    return {"model_name": str(folder), "max_seq_length": spec.max_seq_tokens, "dtype": None, "load_in_4bit": False,
            "full_finetuning": False, "local_files_only": True}


def peft_arguments(spec: JobSpec) -> dict[str, Any]:
    """FastLanguageModel.get_peft_model's arguments (the CPU engine's LoRA, plus Unsloth's checkpointing)."""
    return {"r": spec.lora_rank, "target_modules": list(TARGET_MODULES), "lora_alpha": lora_alpha(spec.lora_rank),
            "lora_dropout": 0.0, "bias": "none", "use_gradient_checkpointing": "unsloth",
            "random_state": spec.seed, "use_rslora": False}


def train_cuda(spec: JobSpec, records: list[dict[str, Any]], out: Path, emit: Emit) -> dict[str, Any]:
    """Train on the GPU and save the PEFT adapter (safetensors) in `out`."""
    import unsloth  # noqa: F401 - first, so it patches transformers and trl before they load
    from unsloth import FastLanguageModel, is_bfloat16_supported

    from a4ps.finetune.cpu_engine import export_hf

    emit({"event": "phase", "phase": "load"})
    started = time.perf_counter()
    folder = export_hf(Path(spec.base_model), hf_base_dir(spec))
    model, tokenizer = FastLanguageModel.from_pretrained(**load_arguments(spec, folder))
    model = FastLanguageModel.get_peft_model(model, **peft_arguments(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    load_s = time.perf_counter() - started
    emit({"event": "phase", "phase": "train"})
    arguments = sft_arguments(spec, out / "trainer", cuda=True, bf16=is_bfloat16_supported())
    result = train(model, tokenizer, records, arguments, emit)
    result.pop("model").save_pretrained(str(out), safe_serialization=True)
    return {**result, "load_s": round(load_s, 3)}
