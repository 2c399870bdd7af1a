"""`a4ps finetune --persona NAME [--dataset FILE] [--steps N]` and `a4ps golden stats`.

`finetune` runs one job in the foreground, in its own process like the backend's (one at a time
across both), shows its progress on stderr and ends with the report; the last stdout line is one
JSON object (adapter_gguf, base_model, steps, ...) for scripts. Ctrl-C cancels the job (its process
group is killed; no adapter is left). `golden stats` reads the data dir, so it needs no backend.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

SUMMARY_KEYS = ("job_id", "persona", "engine", "adapter_gguf", "adapter_dir", "base_model", "steps",
                "samples_trained", "train_loss", "steps_per_s", "peak_rss_mb", "convert_s")


def add_commands(subparsers: Any) -> None:
    finetune = subparsers.add_parser("finetune", help="train a persona's LoRA on its golden samples (foreground)")
    finetune.add_argument("--persona", required=True, help="whose golden set (BRICK, ROBIN, ...)")
    finetune.add_argument("--dataset", type=Path, help="a chat JSONL instead of data/golden/<PERSONA>.jsonl")
    finetune.add_argument("--steps", type=int, help="optimiser steps (default autopoiesis.train_steps)")
    finetune.add_argument("--engine", choices=["auto", "cpu", "cuda"], default="auto",
                          help="auto: Unsloth on a CUDA GPU when both are there, else the CPU")
    finetune.add_argument("--base", type=Path, help="the base GGUF (default: the embedded model of the settings)")
    finetune.set_defaults(func=finetune_command)
    golden = subparsers.add_parser("golden", help="the golden datasets: samples per persona, held out, last job")
    golden.add_argument("action", choices=["stats"])
    golden.add_argument("--json", action="store_true", help="one JSON object")
    golden.set_defaults(func=golden_stats_command)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The final line's object: the report's headline figures."""
    return {key: report.get(key) for key in SUMMARY_KEYS}


def foreground_job(args: argparse.Namespace, settings: Any) -> dict[str, Any] | None:
    """Run the job, printing progress to stderr; the report, or None after printing why there is none."""
    from a4ps.config import load_codex
    from a4ps.curator.golden import FOLDER, file_name
    from a4ps.finetune.dataset import DatasetError
    from a4ps.finetune.runner import JobFailed, run_job
    from a4ps.finetune.spec import job_spec
    from a4ps.models import ModelError
    from a4ps.models.embedded import resolve_model_path

    names = [p.name for p in load_codex().persona]
    if args.persona not in names:
        print(f"a4ps finetune: no persona {args.persona!r}; known: {', '.join(names)}", file=sys.stderr)
        return None
    if args.steps is not None and args.steps < 1:
        print("a4ps finetune: --steps must be 1 or more", file=sys.stderr)
        return None
    data = Path(settings.data_dir)
    try:
        base = args.base or resolve_model_path(settings.models.embedded)
    except ModelError as exc:
        print(f"a4ps finetune: {exc}", file=sys.stderr)
        return None
    spec = job_spec(settings.autopoiesis, persona=args.persona, dataset=args.dataset or data / FOLDER /
                    file_name(args.persona), base_model=Path(base), data_dir=data, steps=args.steps, engine=args.engine)
    print(f"fine-tune job {spec.job_id}: {spec.persona}, {spec.steps} steps, rank {spec.lora_rank}, over "
          f"{Path(spec.base_model).name}; data {spec.dataset}", file=sys.stderr)
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        report = run_job(spec, trigger="cli", on_event=_print_event, cancel=cancel)
    except (DatasetError, JobFailed) as exc:
        print(f"a4ps finetune: {exc}", file=sys.stderr)
        return None
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"adapter {report['adapter_gguf']} ({report['steps']} steps on {report['samples_trained']} samples, "
          f"{len(report['holdout'])} held out; {report['steps_per_s']} steps/s, peak RSS {report['peak_rss_mb']} MB, "
          f"convert {report['convert_s']} s)", file=sys.stderr)
    return report


def _print_event(event: dict[str, Any]) -> None:
    if event.get("event") == "phase":
        extra = f" ({event['engine']} engine, {event['train']} samples to train on, {event['holdout']} held out)" \
            if event.get("phase") == "prepare" else ""
        print(f"  {event.get('phase')}{extra}", file=sys.stderr)
    elif event.get("event") == "progress" and event.get("step"):
        loss = f"{event['loss']:.4f}" if isinstance(event.get("loss"), (int, float)) else "n/a"
        print(f"  step {event['step']}/{event['total']}  loss {loss}  eta {event.get('eta_s')} s", file=sys.stderr)


def finetune_command(args: argparse.Namespace, settings: Any) -> int:
    report = foreground_job(args, settings)
    if report is None:
        return 1
    from a4ps.adapters.commands import gate_and_swap

    # then the gate, and the swap when it promotes and a backend runs (the backend gates it itself then)
    print(json.dumps({**summary(report), **gate_and_swap(settings, report["persona"], report["job_id"])},
                     sort_keys=True))
    return 0


def golden_stats(data_dir: Path, personas: list[str], holdout_fraction: float) -> dict[str, Any]:
    """Per persona: samples, held out, unreadable lines, golden growth since and state of its last job."""
    from a4ps.curator.golden import FOLDER, file_name
    from a4ps.curator.lines import read_lines
    from a4ps.finetune.dataset import split_holdout
    from a4ps.finetune.jobs import CANCELLED, DONE, FAILED, JobStore

    store = JobStore(data_dir)
    out: dict[str, Any] = {}
    for persona in personas:
        read = read_lines(data_dir / FOLDER / file_name(persona))
        records = [r for r in read.records if isinstance(r.get("messages"), list)]
        _, held = split_holdout(records, holdout_fraction)
        last = store.last(persona)
        counted = store.last(persona, states=(DONE, FAILED, CANCELLED))
        out[persona] = {"samples": len(records), "held_out": len(held),
                        "unreadable_lines": read.bad_lines + int(read.torn_tail) + len(read.records) - len(records),
                        "since_last_job": len(records) - int((counted or {}).get("samples_total") or 0),
                        "last_job": None if last is None else {k: last.get(k) for k in (
                            "job_id", "state", "finished_at", "samples_total", "error", "report")}}
    return out


def golden_stats_command(args: argparse.Namespace, settings: Any) -> int:
    from a4ps.config import load_codex

    personas = [p.name for p in load_codex().persona]
    stats = golden_stats(Path(settings.data_dir), personas, settings.autopoiesis.holdout_fraction)
    if args.json:
        print(json.dumps(stats, sort_keys=True))
        return 0
    trigger = settings.autopoiesis.fine_tune_trigger_size
    for persona, row in stats.items():
        last = row["last_job"]
        job = "no job yet" if last is None else f"last job {last['job_id']}: {last['state']}"
        if last and last.get("report"):
            job += f" ({last['report'].get('adapter_gguf')})"
        print(f"{persona:8} {row['samples']:5} samples, {row['held_out']:3} held out, "
              f"{row['since_last_job']:4} new since the last job (a job at {trigger}); {job}")
        if row["unreadable_lines"]:
            print(f"         {row['unreadable_lines']} unreadable line(s) skipped")
    print(f"held out: {settings.autopoiesis.holdout_fraction:.0%} by a fixed hash of each sample (never trained on)")
    return 0
