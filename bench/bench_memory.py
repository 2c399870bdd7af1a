"""Benchmark H-MEM: embedding speed, IVF_PQ build, hierarchical search latency and recall@10.

Two parts, both through the real MemoryTable/MemoryStore code:
  * synthetic: ``--rows`` rows of clustered unit vectors laid out as episodes (a summary and its
    chunks); the IVF_PQ index is built by the store's background thread once the threshold is
    reached, searches run beside the build, then latency and recall@10 are measured with the index;
  * real: ``--real-rows`` generated sentences embedded with MiniLM (embedding throughput), stored as
    episodes and searched with embedded query sentences, exact and then indexed.

The last line printed is one JSON object with the headline figures.

    .venv/bin/python bench/bench_memory.py --rows 100000
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from a4ps.config import load_settings  # noqa: E402
from a4ps.memory import MemoryStore, MiniLMEmbedder  # noqa: E402
from a4ps.memory.store import _to_arrow  # noqa: E402

SUBJECTS = ["BRICK", "ROBIN", "ALFRED", "the user", "the scheduler", "a new tool", "the sandbox", "the codex",
            "the night shift", "my neighbour", "the gardener", "a junior engineer", "the orchestra", "the baker",
            "the support team", "our cat", "the city council", "the telescope", "a delivery drone", "the library"]
VERBS = ["rewrote", "tested", "questioned", "measured", "summarised", "rejected", "improved", "documented",
         "painted", "repaired", "cancelled", "planned", "translated", "debugged", "photographed", "priced"]
OBJECTS = ["the retry loop", "its memory use", "the failing unit test", "a corner case in the parser",
           "the latency figures", "an unclear requirement", "the weekly budget", "the error message",
           "the garden fence", "a sourdough recipe", "the train timetable", "the wedding playlist",
           "the quarterly report", "a broken bicycle", "the moon landing footage", "the shopping list",
           "a poem about rain", "the tax return", "the database schema", "the holiday itinerary"]
TAILS = ["before lunch", "after a long argument", "with great care", "for the third time", "in under an hour",
         "without telling anyone", "because the deadline moved", "while it was raining", "using only a pencil",
         "at the request of the board", "to save some money", "so the tests would pass", "on a slow laptop",
         "despite the noise", "for the children", "late at night"]
TEMPLATES = ["{S} {v} {o} {t}.", "Yesterday {s} {v} {o} {t}.", "Why has {s} {v} {o} {t}?",
             "{S} {v} {o}; nobody expected that.", "Note {n}: {s} {v} {o} {t}.", "{S} finally {v} {o} {t}."]


def sentences(n: int, seed: int) -> list[str]:
    """``n`` distinct, varied short sentences (8-16 words) from templates and word lists."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    for i in itertools.count():
        if len(out) == n:
            return out
        s = rng.choice(SUBJECTS)
        text = rng.choice(TEMPLATES).format(S=s[0].upper() + s[1:], s=s, v=rng.choice(VERBS), o=rng.choice(OBJECTS),
                                            t=rng.choice(TAILS), n=i)
        if text not in seen:
            seen.add(text)
            out.append(text)
    raise AssertionError("unreachable")


def episode_rows(n: int, per_episode: int, prefix: str, texts: list[str] | None = None) -> list[dict]:
    rows = []
    for i in range(n):
        head = i - i % per_episode
        rows.append(dict(id=f"{prefix}{i}", text=texts[i] if texts else f"row {i}",
                         summary=texts[head] if texts else f"summary {head}",
                         parent_id=None if i % per_episode == 0 else f"{prefix}{head}",
                         kind="summary" if i % per_episode == 0 else "utterance", persona="BRICK",
                         task_id=f"task{head // per_episode}", node="brick", turn=1, seq=i % per_episode,
                         timestamp=float(i)))
    return rows


def clustered_vectors(n: int, dim: int, per_episode: int, rng: np.random.Generator) -> np.ndarray:
    """Topic centres -> episode summaries (cos ~0.8 to their topic) -> chunks (cos ~0.7 to their summary)."""
    episodes = (n + per_episode - 1) // per_episode
    topics = rng.normal(size=(max(8, episodes // 25), dim)).astype(np.float32)
    summaries = topics[rng.integers(0, len(topics), episodes)] + rng.normal(size=(episodes, dim)).astype(np.float32) * 0.75
    vectors = np.repeat(summaries, per_episode, axis=0)[:n]
    noise = rng.normal(size=(n, dim)).astype(np.float32)
    noise[::per_episode] *= 0.0  # the summary row is the episode's centre
    vectors += noise * np.linalg.norm(summaries, axis=1).mean() / np.sqrt(dim)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class SyntheticSpace:
    """The 'embedder' of the synthetic part: it names the vector space; queries come as vectors."""

    id = "synthetic"

    def __init__(self, dim: int):
        self.dim = dim

    def embed(self, texts):
        raise RuntimeError("the synthetic part searches with ready-made vectors")


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000.0, q))


def overlap(got: list[str], want: list[str]) -> float:
    return len(set(got) & set(want)) / max(1, len(want))


def timed_hierarchical(store: MemoryStore, queries: np.ndarray, k: int) -> tuple[list[float], list[list[str]]]:
    times, results = [], []
    store.recall_vector(queries[0], k)  # warm caches
    for q in queries:
        started = time.perf_counter()
        hits = store.recall_vector(q, k)
        times.append(time.perf_counter() - started)
        results.append([h.id for h in hits])
    return times, results


def measure(store: MemoryStore, queries: np.ndarray, label: str) -> dict:
    """Indexed vs exact: hierarchical latency and recall@10, plus flat vector recall@10."""
    times, indexed = timed_hierarchical(store, queries, 10)
    exact = [[h.id for h in store.recall_vector(q, 10, exact=True)] for q in queries]
    hier_recall = float(np.mean([overlap(a, b) for a, b in zip(indexed, exact)]))
    flat, flat_times = [], []
    for q in queries:
        started = time.perf_counter()
        got = [r["id"] for r in store.table.vector_search(q, "id IS NOT NULL", 10)]
        flat_times.append(time.perf_counter() - started)
        want = [r["id"] for r in store.table.vector_search(q, "id IS NOT NULL", 10, exact=True)]
        flat.append(overlap(got, want))
    exact_times = []
    for q in queries[:50]:
        started = time.perf_counter()
        store.recall_vector(q, 10, exact=True)
        exact_times.append(time.perf_counter() - started)
    figures = {"p50_ms": percentile_ms(times, 50), "p95_ms": percentile_ms(times, 95),
               "hier_recall_at_10": hier_recall, "flat_recall_at_10": float(np.mean(flat)),
               "flat_p50_ms": percentile_ms(flat_times, 50), "exact_hier_p50_ms": percentile_ms(exact_times, 50)}
    print(f"[{label}] hierarchical search p50 {figures['p50_ms']:.2f} ms, p95 {figures['p95_ms']:.2f} ms "
          f"(exact hierarchy p50 {figures['exact_hier_p50_ms']:.2f} ms); recall@10 vs exact: hierarchical "
          f"{hier_recall:.3f}, flat vector {figures['flat_recall_at_10']:.3f} (flat p50 {figures['flat_p50_ms']:.2f} ms)")
    return figures


def synthetic_part(args, settings, data_dir: Path) -> dict:
    dim = 384
    rng = np.random.default_rng(args.seed)
    print(f"[synthetic] generating {args.rows} clustered unit vectors ({args.per_episode} rows per episode)")
    vectors = clustered_vectors(args.rows, dim, args.per_episode, rng)
    store = MemoryStore(data_dir / "synthetic", settings.model_copy(update={"index_threshold_rows": args.rows}),
                        SyntheticSpace(dim))
    rows = episode_rows(args.rows, args.per_episode, "s")
    started = time.perf_counter()
    batch = 20000
    for start in range(0, args.rows, batch):
        # The last add reaches the threshold and starts the background IVF_PQ build.
        store.table.add(_to_arrow(rows[start:start + batch], vectors[start:start + batch], dim))
    print(f"[synthetic] wrote {args.rows} rows in {time.perf_counter() - started:.1f} s")
    picks = rng.choice(args.rows, args.queries, replace=False)
    queries = vectors[picks] + rng.normal(size=(args.queries, dim)).astype(np.float32) * (0.3 / np.sqrt(dim))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    during = []
    deadline = time.monotonic() + 3600
    # Upkeep may first run an optimize and then chain the build; search beside both.
    while store.table.index_state().busy:
        if time.monotonic() > deadline:
            raise SystemExit("index build did not finish")
        if store.table.index_state().vector_index == "building":
            started = time.perf_counter()
            store.recall_vector(queries[len(during) % len(queries)], 10)
            during.append(time.perf_counter() - started)
        time.sleep(0.05)
    if not store.table.wait_idle(60):
        raise SystemExit("index upkeep did not finish")
    stats = store.stats()
    if stats.vector_index != "ready":
        raise SystemExit(f"index build failed: {stats.error}")
    print(f"[synthetic] IVF_PQ built in the background in {stats.last_build_s:.1f} s; {len(during)} searches ran "
          f"beside it (p50 {percentile_ms(during, 50) if during else float('nan'):.1f} ms)")
    figures = measure(store, queries, "synthetic")
    figures.update(build_s=stats.last_build_s, searches_during_build=len(during),
                   during_build_p50_ms=percentile_ms(during, 50) if during else None)
    store.close()
    return figures


def real_part(args, settings, data_dir: Path) -> dict:
    embedder = MiniLMEmbedder()
    texts = sentences(args.real_rows, args.seed)
    embedder.embed(texts[:32])  # warm-up
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    embed_s = time.perf_counter() - started
    words = np.mean([len(t.split()) for t in texts])
    print(f"[real] embedded {len(texts)} sentences (mean {words:.1f} words) in {embed_s:.1f} s: "
          f"{len(texts) / embed_s:.0f} sentences/s")
    query_texts = sentences(args.queries + args.real_rows, args.seed + 1)[-args.queries:]
    started = time.perf_counter()
    for text in query_texts[:50]:
        embedder.embed([text])
    query_embed_ms = (time.perf_counter() - started) / 50 * 1000
    queries = embedder.embed(query_texts)
    store = MemoryStore(data_dir / "real", settings.model_copy(update={"index_threshold_rows": 10**9}), embedder)
    store.table.add(_to_arrow(episode_rows(len(texts), args.per_episode, "r", texts), vectors, embedder.dim))
    times, _ = timed_hierarchical(store, queries, 10)
    print(f"[real] {len(texts)} rows, no index: hierarchical search p50 {percentile_ms(times, 50):.2f} ms, "
          f"p95 {percentile_ms(times, 95):.2f} ms; one query embedding {query_embed_ms:.1f} ms")
    hits = store.recall(query_texts[0], 3)
    print(f"[real] example: {query_texts[0]!r} -> {[h.text for h in hits]}")
    started = time.perf_counter()
    store.table.build_index_now()
    print(f"[real] IVF_PQ built in {time.perf_counter() - started:.1f} s")
    figures = measure(store, queries, "real")
    return {"embed_per_s": len(texts) / embed_s, "query_embed_ms": query_embed_ms,
            "noindex_p50_ms": percentile_ms(times, 50), **figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100000, help="synthetic rows (default 100000)")
    parser.add_argument("--real-rows", type=int, default=10000, help="generated sentences to embed (default 10000)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--per-episode", type=int, default=8, help="rows per episode: 1 summary + chunks")
    parser.add_argument("--nprobes", type=int, help="override settings memory.nprobes")
    parser.add_argument("--refine-factor", type=int, help="override settings memory.refine_factor")
    parser.add_argument("--data-dir", type=Path, help="keep the tables here (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true", help="show the store's progress logs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    settings = load_settings().memory
    overrides = {"embedder": "minilm"}
    if args.nprobes:
        overrides["nprobes"] = args.nprobes
    if args.refine_factor:
        overrides["refine_factor"] = args.refine_factor
    settings = settings.model_copy(update=overrides)
    print(f"settings: nprobes {settings.nprobes}, refine_factor {settings.refine_factor}, top_summaries "
          f"{settings.top_summaries}, chunks_per_summary {settings.chunks_per_summary}")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench_memory_"))
    try:
        real = real_part(args, settings, data_dir) if args.real_rows > 0 else {}
        synthetic = synthetic_part(args, settings, data_dir)
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    result = {"rows": args.rows, "p50_ms": synthetic["p50_ms"], "p95_ms": synthetic["p95_ms"],
              "recall_at_10": min(synthetic["hier_recall_at_10"], synthetic["flat_recall_at_10"]),
              "build_s": synthetic["build_s"], "embed_per_s": real.get("embed_per_s"),
              "hier_recall_at_10": synthetic["hier_recall_at_10"], "flat_recall_at_10": synthetic["flat_recall_at_10"],
              "exact_hier_p50_ms": synthetic["exact_hier_p50_ms"],
              "during_build_p50_ms": synthetic["during_build_p50_ms"], "query_embed_ms": real.get("query_embed_ms"),
              "real_rows": args.real_rows, "real_p50_ms": real.get("p50_ms"),
              "real_recall_at_10": min(real["hier_recall_at_10"], real["flat_recall_at_10"]) if real else None,
              "nprobes": settings.nprobes, "refine_factor": settings.refine_factor}
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
