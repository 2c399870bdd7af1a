"""Benchmark of the secure sandbox: what one sandboxed run costs on each available backend.

For a trivial guest (`print(...)`), each backend is timed end to end through
SecureCodeExecutor.run_python (staging, sandbox start, cgroup setup and teardown included). The
overhead is that median minus the median start of the bare interpreter, i.e. what isolation adds.
Targets: bwrap overhead <= 80 ms, runsc overhead <= 400 ms.
Then one forge round on the embedded model (BRICK writes a tool, its tests run in the sandbox):
time split into writing (model) and testing (sandbox), and whether it passed.
Then the forge's spec suite (bench/forge_specs.py): each spec is forged, and the registered tool is
called in the sandbox on hidden cases the model never saw; a spec is solved when a tool was
registered within forge.max_retries attempts AND it passes every hidden case. Target: 70 % solved.
Per-spec lines as it goes; last line: one JSON object.
Usage: .venv/bin/python bench/bench_sandbox.py [--runs N] [--backends a,b] [--no-forge] [--forge-spec TEXT]
       [--forge-retries N] [--specs N] [--model-path FILE.gguf]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from a4ps.config import load_settings  # noqa: E402
from a4ps.sandbox import BACKEND_ORDER, SandboxUnavailable, SecureCodeExecutor  # noqa: E402
from a4ps.sandbox.guest_payload import GUEST_PYTHON  # noqa: E402

TARGET_OVERHEAD_MS = {"bwrap": 80.0, "runsc": 400.0}
SUITE_TARGET = 0.7
TRIVIAL_GUEST = "print('a4ps bench')\n"


def _summary(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "min_ms": round(ordered[0], 1),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 1),
    }


def interpreter_baseline(runs: int) -> dict:
    """Median start+exit of the bare interpreter with the same flags (a constant script, not guest code)."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([GUEST_PYTHON, "-I", "-S", "-c", "print('a4ps bench')"], check=True, capture_output=True)
        samples.append((time.perf_counter() - started) * 1000.0)
    return _summary(samples)


def sandbox_overhead(backend: str, runs: int, work_dir: Path) -> dict:
    """End-to-end and in-sandbox timings of `runs` trivial runs on one backend (after one warm-up)."""
    settings = load_settings().sandbox.model_copy(update={"backend": backend})
    executor = SecureCodeExecutor(settings, work_dir / backend)
    try:
        executor.select_backend()
    except SandboxUnavailable as exc:
        return {"available": False, "reason": str(exc)}
    warm = executor.run_python(TRIVIAL_GUEST)
    if not warm.ok:
        return {"available": True, "error": warm.to_dict()}
    end_to_end, inside = [], []
    for _ in range(runs):
        started = time.perf_counter()
        result = executor.run_python(TRIVIAL_GUEST)
        end_to_end.append((time.perf_counter() - started) * 1000.0)
        inside.append(result.wall_ms)
        if not result.ok:
            return {"available": True, "error": result.to_dict()}
    return {
        "available": True,
        "isolation": executor.backend_description(),
        "end_to_end": _summary(end_to_end),
        "sandbox_wall": _summary(inside),
    }


def bench_sandbox(runs: int, backends: list[str]) -> dict:
    """The sandbox section of the report: per-backend timings, overhead and target verdicts."""
    baseline = interpreter_baseline(runs)
    report: dict = {"runs": runs, "interpreter_baseline": baseline, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="a4ps-bench-sandbox-") as tmp:
        for backend in backends:
            entry = sandbox_overhead(backend, runs, Path(tmp))
            if "end_to_end" in entry:
                overhead = round(entry["end_to_end"]["median_ms"] - baseline["median_ms"], 1)
                entry["overhead_ms"] = overhead
                target = TARGET_OVERHEAD_MS.get(backend)
                if target is not None:
                    entry["target_ms"] = target
                    entry["meets_target"] = overhead <= target
            report["backends"][backend] = entry
    return report


def print_sandbox(report: dict) -> None:
    print(f"interpreter baseline: median {report['interpreter_baseline']['median_ms']} ms ({report['runs']} runs)")
    for backend, entry in report["backends"].items():
        if not entry.get("available"):
            print(f"{backend:6s}: unavailable — {entry['reason']}")
        elif "error" in entry:
            print(f"{backend:6s}: FAILED — {entry['error']}")
        else:
            verdict = ""
            if "target_ms" in entry:
                verdict = f" (target <= {entry['target_ms']:.0f} ms: {'ok' if entry['meets_target'] else 'MISSED'})"
            print(
                f"{backend:6s}: end-to-end median {entry['end_to_end']['median_ms']} ms "
                f"[min {entry['end_to_end']['min_ms']}, p90 {entry['end_to_end']['p90_ms']}], "
                f"in-sandbox wall {entry['sandbox_wall']['median_ms']} ms, "
                f"overhead {entry['overhead_ms']} ms{verdict} — {entry['isolation']}"
            )


def _embedded_models(model_path: str | None):
    """Settings (and the model they select) with an optional GGUF path override; the model loaded once."""
    from a4ps.models import ModelManager
    from a4ps.models.embedded import EmbeddedProvider

    settings = load_settings()
    if model_path:
        settings.models.embedded.model_path = model_path
    models = ModelManager(EmbeddedProvider(settings.models.embedded))
    models.provider.load()
    return settings, models


def _forge_in(settings, models, data_dir: str, retries: int):
    from a4ps.backend.compose import build_forge
    from a4ps.config import load_codex
    from a4ps.events import EventBus
    from a4ps.protos import ProtoManager

    settings.forge.max_retries = retries
    settings.data_dir = data_dir
    codex = load_codex()
    forge = build_forge(settings, codex, models, ProtoManager.for_models(codex, models), EventBus())
    forge.runner.executor.select_backend()
    return forge


def bench_forge(spec: str, retries: int, settings, models) -> dict:
    """One forge request end to end on the embedded model, in a throwaway data dir."""
    with tempfile.TemporaryDirectory(prefix="a4ps-bench-forge-") as data_dir:
        forge = _forge_in(settings, models, data_dir, retries)
        started = time.perf_counter()
        outcome = forge.forge(spec)
        wall_s = time.perf_counter() - started
    sandbox_ms = sum(a.get("validation", {}).get("wall_ms", 0.0) for a in outcome.attempts)
    return {"spec": spec, "ok": outcome.ok, "attempts": len(outcome.attempts), "wall_s": round(wall_s, 3),
            "sandbox_s": round(sandbox_ms / 1000, 3), "model_and_checks_s": round(wall_s - sandbox_ms / 1000, 3),
            "tool": outcome.tool.signature if outcome.tool else None, "error": outcome.error[:300]}


def print_forge(report: dict) -> None:
    print(f"forge round        : {'passed' if report['ok'] else 'failed'} after {report['attempts']} attempt(s) "
          f"in {report['wall_s']:.1f} s (sandbox {report['sandbox_s']:.2f} s, model {report['model_and_checks_s']:.1f} s)")
    print(f"                     {report['tool'] or report['error']}")


def _suite_entry(forge, spec: str, cases: list) -> dict:
    """Forge one spec, then run its hidden cases in the sandbox against the registered tool."""
    from a4ps.forge.harness import run_cases

    started = time.perf_counter()
    outcome = forge.forge(spec)
    wall_s = time.perf_counter() - started
    entry = {"spec": spec, "registered": outcome.ok, "attempts": len(outcome.attempts), "wall_s": round(wall_s, 1),
             "attempt_errors": [a.get("error", "")[:300] for a in outcome.attempts if a.get("error")],
             "diagnoses": [a["diagnosis"] for a in outcome.attempts if a.get("diagnosis")],
             "repairs": sorted({r for a in outcome.attempts for r in a.get("repairs", [])})}
    if not outcome.ok:
        entry.update(ok=False, hidden_passed=0, hidden_total=len(cases), reason=outcome.error[:300])
        return entry
    tool = outcome.tool
    results = run_cases(forge.runner.executor, tool.name, tool.source, cases)
    failed = [r for r in results if not r.ok]
    entry.update(ok=not failed, tool=tool.signature, hidden_passed=len(results) - len(failed),
                 hidden_total=len(results), source=tool.source, tests=tool.tests)
    if failed:
        entry["reason"] = "; ".join(f"{r.args} -> {r.error or repr(r.got)} (expected {r.expected!r})"
                                    for r in failed[:3])[:400]
    return entry


def bench_suite(specs: list, retries: int, settings, models) -> dict:
    """The spec suite: success = a tool registered within `retries` attempts AND all hidden cases pass."""
    results = []
    with tempfile.TemporaryDirectory(prefix="a4ps-bench-suite-") as data_dir:
        forge = _forge_in(settings, models, data_dir, retries)
        for index, (spec, cases) in enumerate(specs, 1):
            entry = _suite_entry(forge, spec, cases)
            results.append(entry)
            verdict = "ok  " if entry["ok"] else ("HIDDEN" if entry["registered"] else "FAIL")
            detail = (entry.get("tool", "") if entry["ok"] else entry.get("reason", "")).replace("\n", " | ")
            print(f"[{index:2d}/{len(specs)}] {verdict} {entry['attempts']} att {entry['wall_s']:6.1f} s "
                  f"hidden {entry['hidden_passed']}/{entry['hidden_total']}  {spec[:60]!r}  {detail[:160]}", flush=True)
    solved = sum(r["ok"] for r in results)
    walls = [r["wall_s"] for r in results]
    attempts: dict[str, int] = {}
    for r in results:
        key = str(r["attempts"]) if r["registered"] else "none"
        attempts[key] = attempts.get(key, 0) + 1
    return {"model": models.provider.describe(), "max_retries": retries, "specs": len(results), "succeeded": solved,
            "registered": sum(r["registered"] for r in results), "success_rate": round(solved / max(1, len(results)), 3),
            "target": SUITE_TARGET, "seconds_per_spec": {"mean": round(statistics.mean(walls), 1) if walls else 0,
                                                          "median": round(statistics.median(walls), 1) if walls else 0,
                                                          "max": max(walls, default=0)},
            "registered_after_attempts": dict(sorted(attempts.items())), "results": results}


def print_suite(report: dict) -> None:
    print(f"forge suite        : {report['succeeded']}/{report['specs']} specs solved "
          f"({report['success_rate']:.0%}, target {report['target']:.0%}) on {report['model']}; "
          f"{report['registered']} registered; {report['seconds_per_spec']['mean']} s/spec mean, "
          f"{report['seconds_per_spec']['median']} median; registered after attempts: {report['registered_after_attempts']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backends", default=",".join(BACKEND_ORDER))
    parser.add_argument("--no-forge", action="store_true", help="skip the forge round and the spec suite")
    parser.add_argument("--forge-spec", default="return the sum of the squares of a list of integers")
    parser.add_argument("--forge-retries", type=int, default=None,
                        help="attempts per spec (default: forge.max_retries from the settings)")
    parser.add_argument("--specs", type=int, default=None, help="run only the first N specs of the suite (0: none)")
    parser.add_argument("--model-path", default=None, help="GGUF to forge with (default: the settings' embedded model)")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKEND_ORDER)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    sandbox = bench_sandbox(args.runs, backends)
    print_sandbox(sandbox)
    forge = suite = None
    if not args.no_forge:
        from bench.forge_specs import SPECS

        settings, models = _embedded_models(args.model_path)
        retries = args.forge_retries or settings.forge.max_retries
        forge = bench_forge(args.forge_spec, retries, settings, models)
        print_forge(forge)
        specs = SPECS if args.specs is None else SPECS[: args.specs]
        if specs:
            suite = bench_suite(specs, retries, settings, models)
            print_suite(suite)
        models.unload()
    print(json.dumps({"sandbox": sandbox, "forge": forge, "forge_suite": suite}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
