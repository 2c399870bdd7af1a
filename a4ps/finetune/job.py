"""One fine-tune job, in this process: data, split, train, convert, check, report, publish.

Why a temp dir and a rename: the gate, the swap and `a4ps adapters` look in
`<data_dir>/adapters/<PERSONA>/<job_id>/`; a job killed at any moment (cancel, a crash, a backend
restart) must never leave a half adapter there. So the job writes into `.tmp-<job_id>/` beside it,
fsyncs every file, and renames the folder into place as its very last act. What a killed job leaves
is a hidden temp folder that the next job (or backend start) removes (a4ps/finetune/jobs.py).

The output: `adapter.gguf` (llama.cpp, loaded over the base GGUF), `adapter_model.safetensors` +
`adapter_config.json` (PEFT, for Ollama's ADAPTER), `report.json` (what was trained on what, how fast).
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from a4ps.atomicfile import write_json
from a4ps.finetune.dataset import load_dataset, split_holdout
from a4ps.finetune.engines import engine_train, pick_engine, versions
from a4ps.finetune.gguf_lora import check_loads, convert_adapter
from a4ps.finetune.sft import TARGET_MODULES, lora_alpha
from a4ps.finetune.spec import JobSpec

Emit = Callable[[dict[str, Any]], None]
REPORT, ADAPTER_GGUF, PEFT_WEIGHTS, PEFT_CONFIG = "report.json", "adapter.gguf", "adapter_model.safetensors", \
    "adapter_config.json"


class JobError(RuntimeError):
    """The job cannot go on; the message says why in a line."""


def _finite(value: float) -> float | None:
    return round(value, 5) if math.isfinite(value) else None  # JSON has no NaN


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in [folder, folder.parent]:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def run_job(spec: JobSpec, emit: Emit = lambda event: None) -> dict[str, Any]:
    """Train, convert and publish one adapter; returns report.json's content (paths of the final dir)."""
    started_at = time.time()
    base = Path(spec.base_model)
    if not base.is_file():
        raise JobError(f"the base model {base} does not exist")
    final, temp = spec.output_dir(), spec.temp_dir()
    if final.exists():
        raise JobError(f"{final} exists already (job ids are unique)")
    dataset = load_dataset(Path(spec.dataset))
    train_set, holdout = split_holdout(dataset.samples, spec.holdout_fraction)
    engine = pick_engine(spec.engine)
    emit({"event": "phase", "phase": "prepare", "engine": engine, "samples": len(dataset.samples),
          "train": len(train_set), "holdout": len(holdout)})
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        figures = engine_train(engine)(spec, [s.record() for s in train_set], temp, emit)
        emit({"event": "phase", "phase": "convert"})
        began = time.perf_counter()
        converted = convert_adapter(temp, base, temp / ADAPTER_GGUF)
        convert_s = time.perf_counter() - began
        verify_s = None
        if spec.verify_load:
            emit({"event": "phase", "phase": "verify"})
            began = time.perf_counter()
            check_loads(base, temp / ADAPTER_GGUF)
            verify_s = round(time.perf_counter() - began, 3)
        report = {
            "job_id": spec.job_id, "persona": spec.persona, "engine": engine, "base_model": str(base),
            "adapter_dir": str(final), "adapter_gguf": str(final / ADAPTER_GGUF),
            "peft_adapter": str(final / PEFT_WEIGHTS), "peft_config": str(final / PEFT_CONFIG),
            "dataset": str(dataset.path), "dataset_sha256": dataset.sha256, "samples_total": len(dataset.samples),
            "samples_trained": len(train_set), "torn_tail_skipped": dataset.torn_tail,
            "holdout_fraction": spec.holdout_fraction,
            "holdout": [{"id": s.id, "line": s.line} for s in holdout],
            "steps": figures["steps"], "steps_requested": spec.steps, "batch_size": spec.batch_size,
            "lora_rank": spec.lora_rank, "lora_alpha": lora_alpha(spec.lora_rank),
            "target_modules": list(TARGET_MODULES), "learning_rate": spec.learning_rate,
            "max_seq_tokens": spec.max_seq_tokens, "seed": spec.seed,
            "losses": [_finite(v) for v in figures["losses"]], "train_loss": _finite(figures["train_loss"]),
            "load_s": figures["load_s"], "train_s": figures["train_s"], "steps_per_s": figures["steps_per_s"],
            "convert_s": round(convert_s, 3), "verify_load_s": verify_s, "gguf": converted,
            "peak_rss_mb": peak_rss_mb(), "versions": versions(),
            "started_at": started_at, "finished_at": time.time(),
        }
        write_json(temp / REPORT, report)
        _fsync_tree(temp)
        os.rename(temp, final)  # the one step that makes the adapter visible
        _fsync_tree(final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    emit({"event": "phase", "phase": "done"})
    return report
