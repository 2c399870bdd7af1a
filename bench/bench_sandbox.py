"""Benchmark of the secure sandbox: what one sandboxed run costs on each available backend.

For a trivial guest (`print(...)`), each backend is timed end to end through
SecureCodeExecutor.run_python (staging, sandbox start, cgroup setup and teardown included). The
overhead is that median minus the median start of the bare interpreter, i.e. what isolation adds.
Targets: bwrap overhead <= 80 ms, runsc overhead <= 400 ms.
Last line: one JSON object.  Usage: .venv/bin/python bench/bench_sandbox.py [--runs N] [--backends a,b]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backends", default=",".join(BACKEND_ORDER))
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKEND_ORDER)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    sandbox = bench_sandbox(args.runs, backends)
    print_sandbox(sandbox)
    print(json.dumps({"sandbox": sandbox}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
