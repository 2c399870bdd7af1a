"""H-MEM under crashes and concurrency: SIGKILLed writers, readers beside writers (threads, processes)."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lancedb
import pytest

from a4ps.config import load_settings
from a4ps.memory import MemoryStore, MiniLMEmbedder
from a4ps.memory.table import DB_DIRNAME

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]

# A writer process: episodes whose task_id says how many chunks they must have ("s<seed>e<i>-<chunks>").
# Its embedder embeds a pool of real sentences once, so each episode is one big, fast LanceDB add.
WRITER = r"""
import random, sys
import numpy as np
from a4ps.config import load_settings
from a4ps.memory import MemoryStore, MiniLMEmbedder

class PooledMiniLM:
    id = MiniLMEmbedder.id
    dim = 384
    def __init__(self):
        self.inner, self.cache = MiniLMEmbedder(), {}
    def embed(self, texts):
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        self.cache.update(zip(missing, self.inner.embed(missing)))
        return np.stack([self.cache[t] for t in texts])

data_dir, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
settings = load_settings().memory.model_copy(update={"embedder": "minilm"})
store = MemoryStore(data_dir, settings, PooledMiniLM())
pool = [f"{a} {b} the {c} of the {d}." for a, b, c, d in zip(
    ["BRICK", "ROBIN", "ALFRED", "The tool", "The user"] * 13, ["checked", "praised", "doubted", "fixed"] * 16,
    ["edge", "speed", "cost", "shape", "tone", "size", "risk"] * 10, ["plan", "code", "poem", "test", "loop"] * 13)]
rng = random.Random(int(sys.argv[4]))
handshake = sys.argv[5] == "handshake"
print("ready", flush=True)
for i in range(count):
    n = size + (i % 5) * (size // 4)
    utterances = [{"persona": "BRICK", "text": rng.choice(pool), "node": "brick", "turn": t} for t in range(n)]
    print(f"begin {i}", flush=True)
    if handshake:
        sys.stdin.readline()  # the parent says when, so it can time its SIGKILL into the write
    store.remember_task(f"s{sys.argv[4]}e{i}-{n + 1}", f"task {i}", f"summary {i}", "plan: " + rng.choice(pool), utterances)
    print(f"done {i}", flush=True)
"""


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def memory_settings(**update):
    return load_settings().memory.model_copy(update={"embedder": "minilm", **update})


def start_writer(data_dir: Path, count: int, size: int, seed: int, handshake: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", WRITER, str(data_dir), str(count), str(size), str(seed),
            "handshake" if handshake else "free"]
    return subprocess.Popen(argv, stdin=subprocess.PIPE if handshake else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)


def check_consistent(data_dir: Path) -> dict[str, int]:
    """Every stored episode is whole: its chunk count matches its task_id, and no chunk is orphaned."""
    db = lancedb.connect(str(data_dir / DB_DIRNAME))
    (name,) = db.list_tables().tables
    table = db.open_table(name)
    rows = table.to_arrow().select(["id", "parent_id", "task_id", "seq"]).to_pylist()
    assert table.count_rows() == len(rows)
    heads = {r["id"]: r["task_id"] for r in rows if r["parent_id"] is None}
    chunks: dict[str, list[int]] = {}
    for r in rows:
        if r["parent_id"] is not None:
            assert r["parent_id"] in heads, "orphan chunk"
            chunks.setdefault(r["parent_id"], []).append(r["seq"])
    complete = {}
    for head, task_id in heads.items():
        expected = int(task_id.rsplit("-", 1)[1])
        assert sorted(chunks.get(head, [])) == list(range(1, expected + 1)), f"{task_id} is partial"
        complete[task_id] = expected
    return complete


def test_sigkill_mid_add_leaves_whole_episodes(tmp_path, embedder):
    rng = random.Random(5)
    for trial in range(4):
        writer = start_writer(tmp_path, 1000, 400, seed=trial, handshake=True)
        begun = done = -1
        target = 2 + trial
        while True:
            line = writer.stdout.readline()
            assert line, "writer exited early"
            word, _, number = line.strip().partition(" ")
            if word == "done":
                done = int(number)
            elif word == "begin":
                begun = int(number)
                writer.stdin.write("go\n")
                writer.stdin.flush()
                if begun == target:
                    # The add of one 400+ row episode takes tens of ms: kill somewhere inside it.
                    time.sleep(rng.uniform(0.0, 0.04))
                    writer.send_signal(signal.SIGKILL)
                    break
        writer.wait(10)
        assert writer.returncode == -signal.SIGKILL
        complete = check_consistent(tmp_path)
        this_trial = [task for task in complete if task.startswith(f"s{trial}e")]
        # Every episode reported done survived; the one being written is there whole or not at all.
        assert done + 1 <= len(this_trial) <= begun + 1
    # The store still works after all the crashes.
    store = MemoryStore(tmp_path, memory_settings(), embedder)
    before = store.stats().rows
    store.remember_task("after-2", "Water the ferns", "Watered twice.", "fill can",
                        [{"persona": "ROBIN", "text": "Ferns drink."}])
    assert store.stats().rows == before + 3
    assert store.recall("watering ferns", 1)[0].task_id == "after-2"
    assert check_consistent(tmp_path)["after-2"] == 2


def test_readers_beside_a_writer_thread(tmp_path, embedder):
    store = MemoryStore(tmp_path, memory_settings(), embedder)
    errors: list[BaseException] = []
    stop = threading.Event()
    seen_rows: list[int] = []

    def writer() -> None:
        try:
            for i in range(12):
                store.remember_task(f"w{i}-{i % 4 + 2}", f"Task number {i} about gardening",
                                    f"Summary {i}", f"plan {i}",
                                    [{"persona": "BRICK", "text": f"step {j} of task {i}"} for j in range(i % 4 + 1)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader() -> None:
        try:
            while not stop.is_set():
                seen_rows.append(store.stats().rows)
                for hit in store.recall("gardening task", 3):
                    assert hit.task_id.startswith("w")
                for episode in store.recent_episodes(5):
                    assert len(episode.chunks) == int(episode.task_id.rsplit("-", 1)[1])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert store.stats().summaries == 12
    assert len(seen_rows) > 1


def test_reader_process_view_follows_a_writer_process(tmp_path, embedder):
    store = MemoryStore(tmp_path, memory_settings(), embedder)  # opened before the writer writes
    writer = start_writer(tmp_path, 8, 8, seed=1)
    seen: list[int] = []
    deadline = time.monotonic() + 90
    while writer.poll() is None:
        assert time.monotonic() < deadline
        seen.append(store.stats().summaries)
        for episode in store.recent_episodes(3):
            assert len(episode.chunks) == int(episode.task_id.rsplit("-", 1)[1])
        store.recall("the plan", 2)
        time.sleep(0.01)
    assert writer.returncode == 0
    assert store.stats().summaries == 8 and seen == sorted(seen)
    assert len(set(seen)) >= 2, "the reader never saw the table grow while the writer ran"
    check_consistent(tmp_path)


def test_background_optimize_beside_writes_and_reads(tmp_path, embedder, caplog):
    caplog.set_level(logging.INFO, logger="a4ps.memory")
    store = MemoryStore(tmp_path, memory_settings(), embedder)
    store.table.optimize_every_writes = 4
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                for episode in store.recent_episodes(4):
                    assert len(episode.chunks) == int(episode.task_id.rsplit("-", 1)[1])
                store.recall("compaction of small files", 2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(24):
            store.remember_task(f"o{i}-2", f"Task {i}: compact the files", f"Summary {i}", "plan",
                                [{"persona": "ROBIN", "text": f"Compaction pass {i} merged small fragments."}])
    finally:
        assert store.table.wait_idle(60)
        done.set()
        thread.join(30)
    assert not errors, errors
    assert sum("memory: optimized table" in r.getMessage() for r in caplog.records) >= 2
    fragments = store.table._table.stats()["fragment_stats"]["num_fragments"]
    assert fragments < 24, "optimize did not compact the one-fragment-per-write layout"
    assert store.stats().summaries == 24 and store.stats().error == ""
    assert len(check_consistent(tmp_path)) == 24
