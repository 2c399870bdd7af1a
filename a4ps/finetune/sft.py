"""The one trainer: TRL's SFTTrainer on the `messages` dataset, shared by both engines.

Why shared: the CPU engine (transformers + PEFT) and the CUDA engine (Unsloth) differ only in how
the model is loaded and the adapter saved; the data, the arguments and the progress reporting must
be the same, so a job means the same thing on either machine. The argument builders return plain
dicts (no torch import) so they are tested where torch is absent or no GPU exists.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from a4ps.finetune.spec import JobSpec

# The attention projections of every block: the layers whose LoRA llama.cpp applies per call.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")

Emit = Callable[[dict[str, Any]], None]


def lora_alpha(rank: int) -> int:
    return 2 * rank


def lora_arguments(spec: JobSpec) -> dict[str, Any]:
    """peft.LoraConfig's arguments (the CPU engine; Unsloth's get_peft_model takes the same values)."""
    return {"r": spec.lora_rank, "lora_alpha": lora_alpha(spec.lora_rank), "lora_dropout": 0.0, "bias": "none",
            "target_modules": list(TARGET_MODULES), "task_type": "CAUSAL_LM"}


def sft_arguments(spec: JobSpec, output_dir: Path, *, cuda: bool, bf16: bool = False) -> dict[str, Any]:
    """trl.SFTConfig's arguments: `spec.steps` optimiser steps, a loss logged every step, no checkpoints."""
    return {
        "output_dir": str(output_dir),
        "max_steps": spec.steps,
        "per_device_train_batch_size": spec.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": spec.learning_rate,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": spec.seed,
        "data_seed": spec.seed,
        "max_length": spec.max_seq_tokens,
        "packing": False,
        "use_cpu": not cuda,
        "bf16": bool(cuda and bf16),
        "fp16": False,
        "optim": "adamw_8bit" if cuda else "adamw_torch",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "remove_unused_columns": True,
    }


def chat_dataset(records: list[dict[str, Any]]) -> Any:
    """A `datasets.Dataset` of {"messages": [...]} rows: SFTTrainer applies the chat template."""
    from datasets import Dataset

    return Dataset.from_list(records)


def progress_callback(emit: Emit, losses: list[float]) -> Any:
    """A TrainerCallback that emits one `progress` line per logged step and keeps the losses."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' signature
            self.started = time.monotonic()
            emit({"event": "progress", "step": 0, "total": state.max_steps, "loss": None, "eta_s": None})

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not logs or "loss" not in logs:
                return
            step, total, loss = state.global_step, state.max_steps, float(logs["loss"])
            losses.append(loss)
            per_step = (time.monotonic() - self.started) / max(step, 1)
            emit({"event": "progress", "step": step, "total": total,
                  "loss": round(loss, 5) if math.isfinite(loss) else None,
                  "eta_s": round(per_step * max(total - step, 0), 1)})

    return Progress()


def train(model: Any, tokenizer: Any, records: list[dict[str, Any]], arguments: dict[str, Any], emit: Emit,
          peft_config: Any = None) -> dict[str, Any]:
    """Run SFTTrainer; returns the trained (PEFT) model and the figures of the run."""
    from trl import SFTConfig, SFTTrainer

    losses: list[float] = []
    trainer = SFTTrainer(model=model, args=SFTConfig(**arguments), train_dataset=chat_dataset(records),
                         processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[progress_callback(emit, losses)])
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    steps = int(trainer.state.global_step)
    return {"model": trainer.model, "steps": steps, "losses": losses, "train_s": round(seconds, 3),
            "steps_per_s": round(steps / seconds, 4) if seconds > 0 else None,
            "train_loss": float(output.training_loss)}
