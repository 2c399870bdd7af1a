"""Which engine trains: Unsloth on a CUDA GPU when both are there, TRL/PEFT on the CPU otherwise.

Why a choice at run time: the same job spec must run on the user's laptop and on a GPU box. `auto`
takes CUDA only when torch sees a GPU *and* unsloth is installed (an optional extra: its pins fight
this project's index, ../shared/FACTS.md); asking for `cuda` where it cannot run is an error, not a
silent minutes-long CPU run.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

CPU, CUDA = "cpu", "cuda"


class EngineUnavailable(RuntimeError):
    pass


def cuda_ready() -> tuple[bool, str]:
    """(usable, why not): a GPU torch sees, and unsloth installed."""
    import torch

    if not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    if importlib.util.find_spec("unsloth") is None:
        return False, "unsloth is not installed (pip install unsloth on the GPU machine)"
    return True, ""


def pick_engine(requested: str, probe: Callable[[], tuple[bool, str]] = cuda_ready) -> str:
    if requested == CPU:
        return CPU
    usable, why = probe()
    if requested == CUDA and not usable:
        raise EngineUnavailable(f"the CUDA engine cannot run here: {why}")
    return CUDA if usable else CPU


def engine_train(engine: str) -> Callable[..., dict[str, Any]]:
    """The engine's train function (spec, records, out, emit) -> figures."""
    if engine == CUDA:
        from a4ps.finetune.cuda_engine import train_cuda

        return train_cuda
    from a4ps.finetune.cpu_engine import train_cpu

    return train_cpu


def versions() -> dict[str, str]:
    """The training stack's versions, for the report."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "gguf", "unsloth"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
