"""The gate before the swap: an adapter is put to work only if it answers held-out prompts better.

Why: a fine-tune on a few dozen samples can as easily make a persona worse. Each held-out golden
sample of the persona (never trained on) is answered by the base model and by base + adapter, greedy
so the comparison is repeatable; ALFRED judges each pair blind in both orders (the cadence's
`judge_blind`, so a preference for a position cancels: a judge that always says "1" gives 0.5), a tie
counting half. The adapter is promoted at `autopoiesis.promotion_win_rate` or above, else kept aside.
Everything asked and answered goes into the job's gate.json (written atomically).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from a4ps.adapters.jobs import GATE, AdapterJob, held_out, prompt_of
from a4ps.atomicfile import write_json
from a4ps.cadence.preview import judge_blind, tally
from a4ps.config.schema import Autopoiesis, Codex
from a4ps.graph.voice import TaskCancelled, Voices
from a4ps.models import ModelManager
from a4ps.models.types import ModelCancelled, Sampling

log = logging.getLogger(__name__)

PROMOTED, KEPT_ASIDE = "promoted", "kept_aside"
ANSWER_TOKENS = 256  # each held-out answer at most (a persona's whole answer is not needed to compare)


class GateInterrupted(Exception):
    """The gate stopped (a task came, or shutdown); nothing was written, it runs again later."""


def win_rate(samples: list[dict[str, Any]]) -> float:
    """The adapter's share of the verdicts, a tie counting half."""
    verdicts = 2 * len(samples)
    wins = sum(s["wins"] for s in samples) + 0.5 * sum(s["ties"] for s in samples)
    return round(wins / verdicts, 4) if verdicts else 0.0


class AdapterGate:
    """Runs the comparison for one job and records it; see the module docstring."""

    def __init__(self, settings: Autopoiesis, models: ModelManager, judge: Voices, codex: Codex,
                 answer_tokens: int, repeat_penalty: float, judge_model: Callable[[], str]):
        self._settings, self._models, self._judge, self._codex = settings, models, judge, codex
        self._answer_tokens = min(answer_tokens, ANSWER_TOKENS)
        self._repeat_penalty, self._judge_model = repeat_penalty, judge_model

    def run(self, job: AdapterJob, base_model: str, cancel: threading.Event) -> dict[str, Any]:
        """Judge `job` against `base_model`; returns what gate.json now holds. Raises JobError (no
        held-out samples), ModelError (the adapter cannot be loaded) or GateInterrupted."""
        started = time.perf_counter()
        samples = held_out(job)
        variant = job.variant_name()
        self._models.make_variant(variant, base=base_model, lora_gguf=job.lora_gguf, peft_files=job.peft_files)
        results = []
        for n, sample in enumerate(samples):
            if cancel.is_set():
                raise GateInterrupted(f"gate of {job.job_id} interrupted before sample {n + 1}")
            prompt = prompt_of(sample)
            task = next(m["content"] for m in reversed(prompt) if m["role"] == "user")
            base_answer = self._answer(prompt, base_model, cancel)
            adapter_answer = self._answer(prompt, variant, cancel)
            try:
                verdicts = judge_blind(self._judge, self._codex, task, base_answer, adapter_answer,
                                       task_id=f"gate-{job.job_id}", turn=2 * n + 1, cancel=cancel,
                                       node="adapter_gate")
            except TaskCancelled:
                raise GateInterrupted(f"gate of {job.job_id} interrupted while judging") from None
            results.append({"prompt": prompt, "task": task, "base_answer": base_answer,
                            "adapter_answer": adapter_answer, "verdicts": verdicts,
                            "order": ["base first", "adapter first"], **tally(verdicts)})
        rate = win_rate(results)
        threshold = self._settings.promotion_win_rate
        record = {"persona": job.persona, "job_id": job.job_id, "base_model": base_model, "variant": variant,
                  "provider": self._models.provider_name, "judge_model": self._judge_model(),
                  "samples": results, "wins": sum(r["wins"] for r in results),
                  "losses": sum(r["losses"] for r in results), "ties": sum(r["ties"] for r in results),
                  "win_rate": rate, "threshold": threshold,
                  "decision": PROMOTED if rate >= threshold else KEPT_ASIDE,
                  "gated_at": time.time(), "seconds": round(time.perf_counter() - started, 3)}
        write_json(job.folder / GATE, record)
        job.gate = record
        log.info("gate of %s (%s): win rate %.2f over %d held-out sample(s), threshold %.2f: %s", job.job_id,
                 job.persona, rate, len(results), threshold, record["decision"])
        return record

    def _answer(self, prompt: list[dict[str, str]], model: str, cancel: threading.Event) -> str:
        sampling = Sampling(temperature=0.0, top_p=1.0, max_tokens=self._answer_tokens,
                            repeat_penalty=self._repeat_penalty, should_stop=cancel.is_set)
        try:
            return self._models.chat(prompt, model=model, sampling=sampling).text.strip()
        except ModelCancelled:
            raise GateInterrupted("gate interrupted while a model answered") from None
