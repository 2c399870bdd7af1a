"""Quality benchmark: does the Socratic debate answer better than one plain call to the same model?

Each task of bench/quality_tasks.py (checkable answers: numbers, words, list lengths, code run in the
sandbox against hidden cases) is answered (a) by one plain chat call with ALFRED's system prompt and
(b) by the full Socratic graph (plan, BRICK/ROBIN turns, tool forge available, synthesis). Prints a
line per task, then the accuracy of each, their difference, seconds and tokens per task, the graph's
first-token time and the share of prompt tokens served from the model's cache.
Target: the graph at least 5 points above the single call on the embedded default.
Last line: one JSON object.
Usage: .venv/bin/python bench/bench_quality.py [--limit N | --ids a,b] [--max-turns N] [--model NAME | --model-path F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_tasks import TASKS, QualityTask, code_of, grade_text  # noqa: E402

from a4ps.backend.compose import build_executor, build_forge  # noqa: E402
from a4ps.config import load_codex, load_settings  # noqa: E402
from a4ps.config.templates import shown  # noqa: E402
from a4ps.events import EventBus  # noqa: E402
from a4ps.graph import SocraticGraph  # noqa: E402
from a4ps.graph.voice import Voices  # noqa: E402
from a4ps.memory import make_embedder  # noqa: E402
from a4ps.models import ModelManager  # noqa: E402
from a4ps.models.embedded import EmbeddedProvider  # noqa: E402
from a4ps.models.types import Sampling  # noqa: E402
from a4ps.protos import ProtoManager  # noqa: E402
from a4ps.sandbox import SecureCodeExecutor  # noqa: E402

# Runs in the sandbox: the answer's code, then each hidden case; prints one JSON line of verdicts.
CHECKER = r'''
import json, math, sys
cases = json.loads(sys.stdin.read())
results = []
try:
    namespace = {"__name__": "answer"}
    exec(compile(open("answer.py", encoding="utf-8").read(), "answer.py", "exec"), namespace)
    function = namespace[cases["function"]]
    for args, expected in cases["cases"]:
        try:
            got = function(*args)
            ok = got == expected or (isinstance(got, float) and isinstance(expected, (int, float))
                                     and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-6))
            results.append([ok, repr(got)[:80]])
        except Exception as exc:
            results.append([False, type(exc).__name__])
except BaseException as exc:
    results = [[False, "load: " + type(exc).__name__ + ": " + str(exc)[:80]]]
print("A4PS-CHECK " + json.dumps(results))
'''


def grade(task: QualityTask, answer: str, executor: SecureCodeExecutor) -> tuple[bool, str]:
    """Text kinds by their grader; code by running the answer's code on the hidden cases in the sandbox."""
    if task.kind != "code":
        return grade_text(task, answer)
    code = code_of(answer)
    if not code.strip():
        return False, "no code in the answer"
    cases = {"function": task.function, "cases": [[list(args), expected] for args, expected in task.cases]}
    run = executor.run_python(CHECKER, files={"answer.py": code}, stdin=json.dumps(cases).encode(), timeout_s=10)
    line = next((l for l in reversed(run.stdout.splitlines()) if l.startswith("A4PS-CHECK ")), None)
    if line is None:
        return False, f"checker gave no verdict (exit {run.exit_code}, {run.kill_reason or run.stderr[-120:]})"
    results = json.loads(line[len("A4PS-CHECK "):])
    passed = sum(1 for ok, _ in results if ok)
    return passed == len(task.cases) and len(results) == len(task.cases), f"{passed}/{len(task.cases)} hidden cases"


class CallLog:
    """The model_call events of one run: tokens, cache reuse, first token."""

    def __init__(self, bus: EventBus):
        self.calls: list[dict] = []
        self.first_token_at: float | None = None
        bus.subscribe("model_call", lambda e: self.calls.append(e.payload))
        bus.subscribe("token", self._token)

    def _token(self, event) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def reset(self) -> None:
        self.calls, self.first_token_at = [], None


def _votes(results: list[dict]) -> str:
    """Each round's independent numbers, compactly (B=BRICK, P=BRICK's program, R=ROBIN, A=ALFRED's own working)."""
    def mark(r: dict, key: str) -> str:
        return "P" if key == "brick" and r.get("computed") else key[0].upper()
    return " ".join("/".join(f"{mark(r, k)}{shown(r[k])}" for k in ("brick", "robin", "alfred") if k in r)
                    for r in results) or "-"


def summarize(rows: list[dict], modes: set[str], model: str, max_turns: int) -> dict:
    """The figures of one run; the difference only when both answers were run on the same tasks."""
    n = len(rows)
    summary: dict = {"bench": "quality", "model": model, "tasks": n, "max_turns": max_turns, "modes": sorted(modes)}
    kinds = sorted({r["kind"] for r in rows})
    per_kind: dict = {kind: {"n": sum(1 for r in rows if r["kind"] == kind)} for kind in kinds}
    if "single" in modes:
        summary["single_accuracy"] = round(sum(r["single_ok"] for r in rows) / n, 3)
        summary["single_mean_s"] = round(statistics.mean(r["single_s"] for r in rows), 1)
        summary["single_mean_tokens"] = round(statistics.mean(r["single_tokens"] for r in rows))
        for kind in kinds:
            per_kind[kind]["single"] = sum(r["single_ok"] for r in rows if r["kind"] == kind)
    if "graph" in modes:
        prompt_total = sum(r["prompt_tokens"] for r in rows)
        firsts = [r["first_token_s"] for r in rows if r["first_token_s"]]
        summary.update(
            graph_accuracy=round(sum(r["graph_ok"] for r in rows) / n, 3),
            graph_mean_s=round(statistics.mean(r["graph_s"] for r in rows), 1),
            graph_p50_s=round(statistics.median(r["graph_s"] for r in rows), 1),
            first_token_p50_s=round(statistics.median(firsts), 2) if firsts else None,
            graph_mean_tokens=round(statistics.mean(r["graph_tokens"] for r in rows)),
            prompt_tokens_reused_share=round(sum(r["reused_tokens"] for r in rows) / prompt_total, 3) if prompt_total else 0,
            turns=dict(sorted(Counter(str(r.get("turns", "-")) for r in rows).items())))
        for kind in kinds:
            per_kind[kind]["graph"] = sum(r["graph_ok"] for r in rows if r["kind"] == kind)
    if modes == {"graph", "single"}:
        summary["difference_points"] = round(100 * (summary["graph_accuracy"] - summary["single_accuracy"]), 1)
        summary["graph_only_right"] = [r["id"] for r in rows if r["graph_ok"] and not r["single_ok"]]
        summary["single_only_right"] = [r["id"] for r in rows if r["single_ok"] and not r["graph_ok"]]
    summary["per_kind"] = per_kind
    return summary


def summary_line(summary: dict) -> str:
    parts = []
    if "single_accuracy" in summary:
        parts.append(f"single call {summary['single_accuracy']:.1%} ({summary['single_mean_s']} s mean)")
    if "graph_accuracy" in summary:
        parts.append(f"graph {summary['graph_accuracy']:.1%} (p50 {summary['graph_p50_s']} s, first token p50 "
                     f"{summary['first_token_p50_s']} s, prompt tokens reused {summary['prompt_tokens_reused_share']:.0%})")
    if "difference_points" in summary:
        parts.append(f"difference {summary['difference_points']:+.1f} points")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N tasks (spread over the kinds)")
    parser.add_argument("--ids", default="", help="comma-separated task ids")
    parser.add_argument("--max-turns", type=int, default=0)
    parser.add_argument("--model", default="", help="a catalog name (default: settings)")
    parser.add_argument("--model-path", default="")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: settings)")
    parser.add_argument("--json-out", default="")
    parser.add_argument("--modes", default="graph,single",
                        help="which answers to run: graph, single or both (a one-sided run prints no difference)")
    args = parser.parse_args()
    modes = {m.strip() for m in args.modes.split(",") if m.strip()}
    if not modes or not modes <= {"graph", "single"}:
        parser.error("--modes takes graph, single or graph,single")

    tasks = list(TASKS)
    if args.ids:
        wanted = args.ids.split(",")
        tasks = [t for t in tasks if t.id in wanted]
    elif args.limit:
        by_kind: dict[str, list[QualityTask]] = {}
        for task in tasks:
            by_kind.setdefault(task.kind, []).append(task)
        spread = [t for group in zip(*by_kind.values()) for t in group]  # round-robin over the kinds
        tasks = (spread + [t for t in tasks if t not in spread])[: args.limit]

    settings, codex = load_settings(), load_codex()
    work = Path(tempfile.mkdtemp(prefix="a4ps-quality-"))
    settings.data_dir = str(work)
    settings.models.provider = "embedded"
    if args.model:
        settings.models.embedded.model = args.model
    if args.model_path:
        settings.models.embedded.model_path = args.model_path
    if args.threads:
        settings.models.embedded.n_threads = args.threads
    if args.max_turns:
        settings.graph.max_turns = args.max_turns

    bus = EventBus()
    log = CallLog(bus)
    provider = EmbeddedProvider(settings.models.embedded)
    models = ModelManager(provider, json_retries=settings.models.json_retries, reason="bench")
    embedder = make_embedder("minilm", None, "")
    models.set_embedder(lambda texts: embedder.embed(texts).tolist())
    protos = ProtoManager.for_models(codex, models)
    voices = Voices(models, protos, bus, settings.models.max_tokens, settings.models.repeat_penalty)
    forge = build_forge(settings, codex, models, protos, bus)
    graph = SocraticGraph(voices, codex, settings.graph, bus, workshop=forge)
    executor = build_executor(settings)
    started = time.perf_counter()
    provider.load()
    print(f"model {provider.describe()} loaded in {time.perf_counter() - started:.1f} s; "
          f"{len(tasks)} task(s), max_turns {settings.graph.max_turns}, sandbox {executor.backend_name}", flush=True)

    graph.warm()  # as the backend does at start: the society's system message is read once
    alfred = protos.get("ALFRED")
    single_tokens = settings.graph.synthesis_tokens + settings.graph.thesis_tokens
    rows = [{"id": task.id, "kind": task.kind} for task in tasks]
    # (b) the Socratic graph, every task in a row (as in use: the shared system message stays cached)
    for task, row in zip(tasks if "graph" in modes else [], rows):
        log.reset()
        t0 = time.perf_counter()
        try:
            final = graph.run(f"q-{task.id}", task.text)
            answer, row["turns"] = final.get("answer", ""), final.get("turn", 0)
            row["dissonance"] = final.get("dissonance", [])
            row["forges"] = final.get("forges", 0)
        except Exception as exc:  # a failed task is a wrong answer, and the bench goes on
            answer, row["error"] = "", f"{type(exc).__name__}: {exc}"
        row["graph_s"] = round(time.perf_counter() - t0, 1)
        row["first_token_s"] = round(log.first_token_at - t0, 2) if log.first_token_at else None
        row["graph_tokens"] = sum(c["completion_tokens"] for c in log.calls)
        row["prompt_tokens"] = sum(c["prompt_tokens"] or 0 for c in log.calls)
        row["reused_tokens"] = sum(c["reused_prompt_tokens"] or 0 for c in log.calls)
        row["calls"] = [{k: c.get(k) for k in ("persona", "constrained", "prompt_tokens", "reused_prompt_tokens",
                                               "completion_tokens", "seconds")} for c in log.calls]
        row["utterances"] = [{"persona": d["persona"], "node": d["node"], "turn": d["turn"], "text": d["text"]}
                             for d in final.get("dialogue", [])] if "error" not in row else []
        row["results"] = final.get("results", []) if "error" not in row else []
        row["graph_ok"], row["graph_why"] = grade(task, answer, executor)
        row["graph_answer"] = answer
        print(f"graph  {task.id:15s} {'OK ' if row['graph_ok'] else 'no '} {row['graph_s']:6.1f}s turns "
              f"{row.get('turns', '-')} first token {row['first_token_s']}s dissonance {row.get('dissonance')} "
              f"reused {row['reused_tokens']}/{row['prompt_tokens']} results {_votes(row['results'])} | {row['graph_why']}"
              f"{' ERROR ' + row['error'] if 'error' in row else ''}", flush=True)
    # (a) one plain call per task
    for task, row in zip(tasks if "single" in modes else [], rows):
        t0 = time.perf_counter()
        result = models.chat([{"role": "system", "content": alfred.system_prompt}, {"role": "user", "content": task.text}],
                             model=alfred.model, sampling=Sampling(alfred.temperature, alfred.top_p, single_tokens,
                                                                   settings.models.repeat_penalty))
        row["single_s"] = round(time.perf_counter() - t0, 1)
        row["single_tokens"] = result.completion_tokens
        row["single_ok"], row["single_why"] = grade(task, result.text, executor)
        row["single_answer"] = result.text
        print(f"single {task.id:15s} {'OK ' if row['single_ok'] else 'no '} {row['single_s']:6.1f}s | "
              f"{row['single_why']}", flush=True)

    summary = summarize(rows, modes, provider.describe(), settings.graph.max_turns)
    print(summary_line(summary))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    provider.unload()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
