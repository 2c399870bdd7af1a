"""Benchmark the fine-tune: steps/s, peak RSS, load and convert time of a CPU LoRA job, per base model.

Each model runs one real job through the same path as the backend and `a4ps finetune` (its own
process, a4ps/finetune/runner.py): a chat dataset of `--samples` golden-style lines, `--steps`
optimiser steps at the settings' rank and rate, the PEFT adapter converted to a GGUF LoRA and loaded
by llama.cpp over the base. Then the base and base + adapter answer one prompt (greedy), to show the
adapter acts. Figures come from the job's report.json (peak RSS is the job process's own).
Then the gate and the swap run on it (bench/adapter_figures.py): gate time, win rate, and the swap
latency from the promotion to the first token spoken with the adapter.

The last line printed is one JSON object with the figures.

    .venv/bin/python bench/bench_finetune.py --models smollm2-135m --samples 40 --steps 30
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from a4ps.config import load_settings  # noqa: E402
from a4ps.finetune.runner import run_job  # noqa: E402
from a4ps.finetune.spec import job_spec  # noqa: E402
from a4ps.models import catalog  # noqa: E402

SYSTEM = "You are BRICK, a logical analyst who answers in numbered steps."
TOPICS = ["tea", "bridges", "clocks", "rivers", "maps", "bees", "ladders", "lamps", "kites", "stairs", "boats",
          "gears", "ropes", "bells", "wells", "doors", "owls", "trains", "salt", "glass"]


def dataset(path: Path, samples: int) -> Path:
    """`samples` chat lines in the golden format (provenance included), varied in topic and length."""
    lines = []
    for i in range(samples):
        topic = TOPICS[i % len(TOPICS)]
        answer = (f"1. {topic.capitalize()} matter because they are used every day.\n"
                  f"2. A careful look at {topic} shows {i % 5 + 2} distinct parts.\n"
                  f"3. Therefore: check each part of the {topic} in order.")
        lines.append({"messages": [{"role": "system", "content": SYSTEM},
                                   {"role": "user", "content": f"Question {i}: how should I think about {topic}?"},
                                   {"role": "assistant", "content": answer}],
                      "provenance": {"episode_id": f"bench-{i}", "persona": "BRICK"}})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def answer(base: Path, lora: str | None) -> str:
    from llama_cpp import Llama

    llm = Llama(model_path=str(base), lora_path=lora, n_ctx=512, n_threads=2, seed=0, verbose=False)
    try:
        reply = llm.create_chat_completion(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "How should I think about owls?"}],
            temperature=0.0, max_tokens=40, seed=0)
    finally:
        llm.close()
    return reply["choices"][0]["message"]["content"]


def bench_model(name: str, samples: int, steps: int, work: Path, gate: bool = True) -> dict:
    settings = load_settings()
    base = catalog.ensure_model(name, settings.models.embedded.models_dir)
    data = work / name
    spec = job_spec(settings.autopoiesis, persona="BRICK", dataset=dataset(work / f"{name}.jsonl", samples),
                    base_model=base, data_dir=data, steps=steps, engine="cpu")
    started = time.perf_counter()
    last = [0.0]

    def show(event: dict) -> None:
        if event.get("event") == "phase":
            print(f"  [{name}] {event['phase']}", flush=True)
        elif event.get("step") and time.perf_counter() - last[0] > 10:
            last[0] = time.perf_counter()
            print(f"  [{name}] step {event['step']}/{event['total']} loss {event['loss']} eta {event['eta_s']} s",
                  flush=True)

    report = run_job(spec, trigger="bench", on_event=show)
    wall = time.perf_counter() - started
    base_answer, tuned_answer = answer(base, None), answer(base, report["adapter_gguf"])
    figures = {"model": name, "samples": samples, "trained": report["samples_trained"], "steps": report["steps"],
               "lora_rank": report["lora_rank"], "job_wall_s": round(wall, 1), "load_s": report["load_s"],
               "train_s": report["train_s"], "steps_per_s": report["steps_per_s"],
               "peak_rss_mb": report["peak_rss_mb"], "convert_s": report["convert_s"],
               "llama_cpp_load_s": report["verify_load_s"], "adapter_mb": round(report["gguf"]["bytes"] / 1e6, 2),
               "first_loss": report["losses"][0], "last_loss": report["losses"][-1],
               "output_changed": base_answer != tuned_answer}
    print(f"{name}: {figures['steps']} steps in {figures['train_s']} s ({figures['steps_per_s']} steps/s), "
          f"peak RSS {figures['peak_rss_mb']} MB, load {figures['load_s']} s, convert {figures['convert_s']} s, "
          f"llama.cpp load {figures['llama_cpp_load_s']} s; job {figures['job_wall_s']} s in all; loss "
          f"{figures['first_loss']} -> {figures['last_loss']}")
    print(f"  base:  {base_answer[:120]!r}\n  tuned: {tuned_answer[:120]!r}")
    if gate:
        figures.update(gate_and_swap(data, report, base))
    return figures


def gate_and_swap(data: Path, report: dict, base: Path) -> dict:
    """Gate time and swap latency (bench/adapter_figures.py) on the job just trained."""
    from adapter_figures import gate_and_swap_figures

    figures = gate_and_swap_figures(load_settings(), data, report["persona"], report["job_id"], base)
    print(f"  gate {figures['gate_s']} s ({figures['held_out']} held out, {figures['gate_s_per_sample']} s each): "
          f"win rate {figures['win_rate']}, {figures['decision']}; swap {figures['swap_apply_s']} s, promotion to "
          f"first token with the adapter {figures['swap_latency_s']} s")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m", help="comma-separated catalog names")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-gate", action="store_true", help="the training figures only (the gate of the "
                                                                  "1.5B takes many minutes here)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="a4ps-bench-finetune-") as work:
        for name in [n.strip() for n in args.models.split(",") if n.strip()]:
            results.append(bench_model(name, args.samples, args.steps, Path(work), gate=not args.skip_gate))
    print(json.dumps({"finetune": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
