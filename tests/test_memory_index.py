"""H-MEM IVF_PQ index: built in the background past the threshold, searched with good recall."""

from __future__ import annotations

import itertools
import logging
import random
import re
import threading
import time

import numpy as np
import pytest

from a4ps.config import load_settings
from a4ps.memory import MemoryStore, MiniLMEmbedder
from a4ps.memory.store import _to_arrow
from a4ps.memory import table as table_module
from a4ps.memory.table import VECTOR_INDEX, MemoryTable

pytestmark = pytest.mark.timeout(120)

SUBJECTS = ["the scheduler", "a sandboxed tool", "the vector index", "ROBIN", "BRICK", "the codex", "a LoRA adapter",
            "the task queue", "the garden plan", "a sourdough loaf", "the budget sheet", "the telescope"]
VERBS = ["rewrote", "tested", "questioned", "measured", "summarised", "rejected", "improved", "documented"]
OBJECTS = ["the retry loop", "its memory use", "the failing test", "a corner case", "the latency figures",
           "an unclear requirement", "the user's goal", "the weekly report", "the error message"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    combos = list(itertools.product(SUBJECTS, VERBS, OBJECTS))
    rng.shuffle(combos)
    return [f"{s.capitalize()} {v} {o} (note {i})." for i, (s, v, o) in enumerate(itertools.islice(
        itertools.cycle(combos), n))]


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def memory_settings(**update):
    return load_settings().memory.model_copy(update={"embedder": "minilm", **update})


def synthetic_rows(n: int, dim: int, seed: int, per_episode: int = 6):
    """Clustered unit vectors laid out as episodes (one summary, then its chunks)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(1, n // 100), dim))
    vectors = centers[rng.integers(0, len(centers), n)] + rng.normal(size=(n, dim)) * 0.7
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    rows = [dict(id=f"s{seed}-{i}", text=f"row {i}", summary="",
                 parent_id=None if i % per_episode == 0 else f"s{seed}-{i - i % per_episode}",
                 kind="summary" if i % per_episode == 0 else "utterance", persona="", task_id=f"syn{i // per_episode}",
                 node="", turn=0, seq=i % per_episode, timestamp=float(i)) for i in range(n)]
    return rows, vectors


def test_index_builds_in_background_while_recall_keeps_working(tmp_path, embedder, caplog):
    caplog.set_level(logging.INFO, logger="a4ps.memory")
    store = MemoryStore(tmp_path, memory_settings(index_threshold_rows=8000), embedder)
    # Bulk history (synthetic vectors) big enough that the build takes seconds, then real episodes.
    rows, vectors = synthetic_rows(7475, embedder.dim, seed=1)
    store.table.add(_to_arrow(rows, vectors, embedder.dim))
    texts = sentences(640)
    for e in range(80):
        chunk = texts[e * 8:(e + 1) * 8]
        store.remember_task(f"t{e}", chunk[0], chunk[1], chunk[2],
                            [{"persona": "BRICK", "text": t, "node": "brick", "turn": 1} for t in chunk[3:]])
        if e < 74:
            assert store.stats().vector_index == "none"
    # Episodes are 7 rows (summary, plan, 5 utterances): 7475 + 75 * 7 = 8000 rows at the 75th, which
    # started the build; 5 more episodes were written beside it.
    query = "BRICK measured the latency figures"
    qv = embedder.embed([query])[0]
    exact = [h.id for h in store.recall_vector(qv, 5, exact=True)]
    during = 0
    deadline = time.monotonic() + 90
    while store.stats().vector_index == "building":
        assert [h.id for h in store.recall_vector(qv, 5)] == exact
        during += 1
        assert time.monotonic() < deadline
    assert during >= 1, "the build finished before any search ran beside it"
    assert store.table.wait_idle(60)
    stats = store.stats()
    assert stats.vector_index == "ready" and stats.rows == 8035
    assert stats.indexed_rows >= 8000 and stats.indexed_rows + stats.unindexed_rows == 8035
    assert stats.last_build_s is not None and stats.busy == ""
    assert VECTOR_INDEX in {ix.name for ix in store.table._table.list_indices()}
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "building IVF_PQ index over" in messages and "IVF_PQ index ready" in messages
    # Indexed search (nprobes/refine from settings) agrees with exact search at this size.
    hits = store.recall(query, 5)
    assert [h.id for h in hits] == exact
    assert "latency" in hits[0].text or "latency" in hits[0].summary or "latency" in hits[0].task_text
    # Rows written after the build are searched too (unindexed rows are scanned exactly).
    store.remember_task("fresh", "Polish the brass telescope lens", "Lens cleaned with alcohol.", "clean",
                        [{"persona": "ROBIN", "text": "The telescope lens now gleams like a moon.", "node": "robin",
                          "turn": 1}])
    assert store.recall("cleaning a telescope lens", 1)[0].task_id == "fresh"
    assert store.stats().unindexed_rows == stats.unindexed_rows + 3


def test_indexed_search_recall_at_10(tmp_path):
    """Settings' nprobes/refine_factor keep recall@10 >= 0.95 against exact search (clustered vectors)."""
    n, dim = 6000, 384
    rows, vectors = synthetic_rows(n, dim, seed=7)
    rng = np.random.default_rng(7)
    table = MemoryTable(tmp_path, memory_settings(index_threshold_rows=10**9), "synthetic", dim)
    table.add(_to_arrow(rows, vectors, dim))
    table.build_index_now()
    assert table.index_state().vector_index == "ready"
    queries = vectors[rng.choice(n, 40, replace=False)] + rng.normal(size=(40, dim)).astype(np.float32) * 0.05
    recalls = []
    for where in ("parent_id IS NULL", "parent_id IS NOT NULL"):
        for q in queries:
            got = {r["id"] for r in table.vector_search(q, where, 10)}
            want = {r["id"] for r in table.vector_search(q, where, 10, exact=True)}
            assert len(want) == 10
            recalls.append(len(got & want) / 10)
    assert np.mean(recalls) >= 0.95


def test_failed_build_is_reported_and_search_still_works(tmp_path, embedder, caplog, monkeypatch):
    caplog.set_level(logging.ERROR, logger="a4ps.memory")
    store = MemoryStore(tmp_path, memory_settings(index_threshold_rows=256), embedder)
    texts = sentences(300)
    # 384 dims cannot be split into 7 PQ sub-vectors: LanceDB itself refuses the build.
    monkeypatch.setattr(table_module, "ivf_pq_shape", lambda rows, dim: (256, 7))
    for e in range(43):  # 6 rows each: the 43rd episode reaches 258 rows and starts the build
        chunk = texts[e * 7:(e + 1) * 7]
        store.remember_task(f"t{e}", chunk[0], chunk[1], chunk[2],
                            [{"persona": "ROBIN", "text": t, "node": "robin", "turn": 1} for t in chunk[3:]])
    assert store.table.wait_idle(60)
    stats = store.stats()
    assert stats.vector_index == "failed" and stats.error.startswith("build")
    assert any("build failed" in r.getMessage() for r in caplog.records)
    qv = embedder.embed([texts[17]])[0]
    hits = store.recall_vector(qv, 3)
    assert hits and [h.id for h in hits] == [h.id for h in store.recall_vector(qv, 3, exact=True)]
    # No retry on every write: the next attempt waits until the table grew by a tenth of the threshold.
    failed_worker = store.table._worker
    store.remember_task("t-next", "one more", "summary", "plan", [])
    assert store.table._worker is failed_worker and store.stats().vector_index == "failed"


def test_a_build_that_comes_due_during_an_optimize_still_happens(tmp_path, monkeypatch):
    table = MemoryTable(tmp_path, memory_settings(index_threshold_rows=6000), "synthetic", 384)
    table.optimize_every_writes = 1  # the first write starts an optimize...
    gate = threading.Event()
    real_optimize = table._optimize

    def held_optimize(handle):  # ...which is held open until the threshold has been crossed
        assert gate.wait(60)
        real_optimize(handle)

    monkeypatch.setattr(table, "_optimize", held_optimize)
    rows, vectors = synthetic_rows(7500, 384, seed=3)
    for start in range(0, 7500, 2500):
        table.add(_to_arrow(rows[start:start + 2500], vectors[start:start + 2500], 384))
    assert table.index_state().vector_index == "none" and table.index_state().busy == "optimizing"
    gate.set()
    assert table.wait_idle(90)
    state = table.index_state()
    assert state.vector_index == "ready" and state.indexed_rows == 7500


def _comparisons_at_one_probe(table: MemoryTable, vector: np.ndarray) -> float:
    """How many PQ codes one probed partition holds, read from LanceDB's analyzed query plan."""
    plan = (table._table.search(vector).distance_type("cosine").limit(3).nprobes(1)
            .select(["id", "_distance"]).analyze_plan())
    match = re.search(r"ANNSubIndex:.*?index_comparisons=([\d.]+)\s*(K?)", plan)
    assert match, plan
    return float(match.group(1)) * (1000 if match.group(2) else 1)


def test_index_keeps_its_partitions_through_optimize(tmp_path):
    """A regression guard: built with a partition count, LanceDB's optimize collapsed IVF to one partition."""
    table = MemoryTable(tmp_path, memory_settings(index_threshold_rows=10**9), "synthetic", 384)
    rows, vectors = synthetic_rows(7000, 384, seed=4)
    table.add(_to_arrow(rows[:6000], vectors[:6000], 384))
    table.build_index_now()
    assert _comparisons_at_one_probe(table, vectors[0]) < 1000
    table.add(_to_arrow(rows[6000:], vectors[6000:], 384))
    table._optimize(table._table)
    state = table.index_state()
    assert state.indexed_rows == 7000 and state.unindexed_rows == 0
    assert _comparisons_at_one_probe(table, vectors[0]) < 1000
