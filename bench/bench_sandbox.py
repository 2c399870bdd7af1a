"""Benchmark of the secure sandbox: what one sandboxed run costs on each available backend.

For a trivial guest (`print(...)`), each backend is timed end to end through
SecureCodeExecutor.run_python (staging, sandbox start, cgroup setup and teardown included). The
overhead is that median minus the median start of the bare interpreter, i.e. what isolation adds.
Targets: bwrap overhead <= 80 ms, runsc overhead <= 400 ms.
Then one forge round on the embedded model (BRICK writes a tool, its tests run in the sandbox):
time split into writing (model) and testing (sandbox), and whether it passed.
Last line: one JSON object.
Usage: .venv/bin/python bench/bench_sandbox.py [--runs N] [--backends a,b] [--no-forge] [--forge-spec TEXT]
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


def bench_forge(spec: str, retries: int) -> dict:
    """One forge request end to end on the embedded model, in a throwaway data dir."""
    from a4ps.backend.compose import build_forge
    from a4ps.config import load_codex
    from a4ps.events import EventBus
    from a4ps.models import ModelManager
    from a4ps.models.embedded import EmbeddedProvider
    from a4ps.protos import ProtoManager

    settings = load_settings()
    settings.forge.max_retries = retries
    codex = load_codex()
    models = ModelManager(EmbeddedProvider(settings.models.embedded))
    models.provider.load()
    with tempfile.TemporaryDirectory(prefix="a4ps-bench-forge-") as data_dir:
        settings.data_dir = data_dir
        forge = build_forge(settings, codex, models, ProtoManager.from_codex(codex, "embedded"), EventBus())
        forge.runner.executor.select_backend()
        started = time.perf_counter()
        outcome = forge.forge(spec)
        wall_s = time.perf_counter() - started
    models.unload()
    sandbox_ms = sum(a.get("validation", {}).get("wall_ms", 0.0) for a in outcome.attempts)
    return {"spec": spec, "ok": outcome.ok, "attempts": len(outcome.attempts), "wall_s": round(wall_s, 3),
            "sandbox_s": round(sandbox_ms / 1000, 3), "model_and_checks_s": round(wall_s - sandbox_ms / 1000, 3),
            "tool": outcome.tool.signature if outcome.tool else None, "error": outcome.error[:300]}


def print_forge(report: dict) -> None:
    print(f"forge round        : {'passed' if report['ok'] else 'failed'} after {report['attempts']} attempt(s) "
          f"in {report['wall_s']:.1f} s (sandbox {report['sandbox_s']:.2f} s, model {report['model_and_checks_s']:.1f} s)")
    print(f"                     {report['tool'] or report['error']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backends", default=",".join(BACKEND_ORDER))
    parser.add_argument("--no-forge", action="store_true", help="skip the forge round on the embedded model")
    parser.add_argument("--forge-spec", default="return the sum of the squares of a list of integers")
    parser.add_argument("--forge-retries", type=int, default=3)
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKEND_ORDER)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    sandbox = bench_sandbox(args.runs, backends)
    print_sandbox(sandbox)
    forge = None if args.no_forge else bench_forge(args.forge_spec, args.forge_retries)
    if forge:
        print_forge(forge)
    print(json.dumps({"sandbox": sandbox, "forge": forge}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
