"""The gate and swap part of bench/bench_finetune.py: gate time and swap latency of a finished job.

Run on the embedded model the job was trained over, through the real organs (a4ps/adapters): the
model is loaded first (as in a running backend), then
- gate: the job's held-out samples answered by the base and by base + adapter, ALFRED judging each
  pair blind in both orders; seconds in all and per held-out sample, the win rate and the decision;
- swap latency: from the promotion (`promote`, as the command does) through the swap between tasks
  (the GGUF LoRA loaded over the base) to the first token the persona speaks with the adapter.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from a4ps.adapters.jobs import FOLDER, load_job
from a4ps.backend.compose import build_adapters, build_models
from a4ps.backend.tasks import TaskQueue
from a4ps.config import load_codex
from a4ps.events import EventBus
from a4ps.graph.voice import Voices
from a4ps.protos import ProtoManager

PROMPT = "How should I think about owls?"


def gate_and_swap_figures(settings: Any, data_dir: Path, persona: str, job_id: str, base_model: Path) -> dict:
    """Figures for one job under `data_dir`/adapters/; `settings` is changed to run `base_model` embedded."""
    settings.models.provider = "embedded"
    settings.models.embedded.model_path = str(base_model)
    settings.data_dir = str(data_dir)
    codex = load_codex()
    models = build_models(settings, codex)
    protos = ProtoManager.for_models(codex, models)
    bus = EventBus()
    first_token: list[float] = []
    bus.subscribe("token", lambda event: first_token.append(time.perf_counter()) if not first_token else None)
    voices = Voices(models, protos, bus, settings.models.max_tokens, settings.models.repeat_penalty)
    adapters = build_adapters(settings, codex, models, protos, voices, TaskQueue(), bus, threading.Event(), None,
                              lambda why: None)
    try:
        models.provider.load()  # a running backend has its model loaded
        job = load_job(data_dir / FOLDER, persona, job_id)
        started = time.perf_counter()
        record = adapters.gate_job(job)
        gate_s = time.perf_counter() - started
        if record is None:
            raise RuntimeError(f"the gate of {job_id} did not finish (see the log)")
        first_token.clear()
        promoted_at = time.perf_counter()
        adapters.promote(persona, job_id)  # by hand when the gate kept it aside: the latency is the same
        applied = adapters.apply_pending()
        if applied[0]["topic"] != "adapter_swapped":
            raise RuntimeError(f"the swap failed: {applied[0]['error']}")
        swapped_at = time.perf_counter()
        voices.speak(persona, [{"role": "user", "content": PROMPT}], task_id="bench", node="bench", turn=1,
                     cancel=threading.Event(), max_tokens=16)
    finally:
        models.unload()
    held_out = len(record["samples"])
    return {"gate_s": round(gate_s, 2), "gate_s_per_sample": round(gate_s / held_out, 2) if held_out else None,
            "held_out": held_out, "win_rate": record["win_rate"], "decision": record["decision"],
            "swap_apply_s": round(swapped_at - promoted_at, 3),
            "swap_latency_s": round(first_token[0] - promoted_at, 3) if first_token else None}

