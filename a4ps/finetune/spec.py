"""One fine-tune job's parameters: what the backend or the CLI hands to the job's process.

Why a file of its own: the job runs in another process (a4ps/finetune/worker.py), so everything it
needs travels as one validated JSON document, never as settings it would re-read and could find
changed. Defaults come from `[autopoiesis]` (a4ps/config/schema.py `Autopoiesis`).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from a4ps.config.schema import Autopoiesis

ADAPTERS = "adapters"        # <data_dir>/adapters/<PERSONA>/<job_id>/
FINETUNE = "finetune"        # <data_dir>/finetune/: job records, logs, the lock
MAX_SEQ_TOKENS = 1024        # a longer sample is cut (memory on CPU grows with it)
TEMP_PREFIX = ".tmp-"        # a job trains in <persona dir>/.tmp-<job_id>/, renamed when complete


class JobSpec(BaseModel):
    """Everything a job needs; see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    persona: str = Field(min_length=1, max_length=40)
    dataset: str                       # the golden JSONL
    base_model: str                    # the base GGUF the adapter is for
    data_dir: str
    steps: int = Field(ge=1, le=100000)
    lora_rank: int = Field(ge=1, le=256)
    learning_rate: float = Field(gt=0.0, le=1.0)
    holdout_fraction: float = Field(ge=0.0, lt=1.0)
    engine: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=1, ge=1, le=64)
    max_seq_tokens: int = Field(default=MAX_SEQ_TOKENS, ge=32, le=32768)
    seed: int = 0
    threads: int = Field(default=0, ge=0, le=256)   # 0: every core
    verify_load: bool = True           # load the GGUF LoRA over the base with llama.cpp before accepting it

    def persona_dir(self) -> Path:
        return Path(self.data_dir) / ADAPTERS / persona_folder(self.persona)

    def output_dir(self) -> Path:
        return self.persona_dir() / self.job_id

    def temp_dir(self) -> Path:
        return self.persona_dir() / f"{TEMP_PREFIX}{self.job_id}"


def persona_folder(persona: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", persona)


def new_job_id(clock: float | None = None) -> str:
    """Sortable by start time, unique: 20261202-131500-3fa9c2."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if clock is None else clock))
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def job_spec(config: Autopoiesis, *, persona: str, dataset: Path, base_model: Path, data_dir: Path,
             steps: int | None = None, job_id: str | None = None, engine: str = "auto") -> JobSpec:
    """A spec with the settings' rank, rate and held-out share; `steps` overrides train_steps."""
    return JobSpec(job_id=job_id or new_job_id(), persona=persona, dataset=str(dataset), base_model=str(base_model),
                   data_dir=str(data_dir), steps=steps or config.train_steps, lora_rank=config.lora_rank,
                   learning_rate=config.learning_rate, holdout_fraction=config.holdout_fraction, engine=engine)
