"""The H-MEM LanceDB table: schema, indexes, hierarchical vector search and background upkeep.

One table per vector space (``hmem_<embedder id>_<dim>``) under ``<data_dir>/memory_db``. Level-1
summary rows have ``parent_id`` NULL; episodic chunks point at their summary. Every write is one
LanceDB commit, so a crash leaves either the whole episode or none of it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from a4ps.config.schema import Memory
from a4ps.memory.records import MemoryStats

log = logging.getLogger(__name__)

DB_DIRNAME = "memory_db"
TABLE_PREFIX = "hmem_"
EMBEDDER_KEY = b"a4ps.embedder"
VECTOR_INDEX = "vector_idx"
#: Columns returned by searches (the vector itself stays on disk).
ROW_COLUMNS = ["id", "text", "summary", "parent_id", "kind", "persona", "task_id",
               "node", "turn", "seq", "timestamp"]
#: A background optimize (compaction + folding new rows into indexes) runs after this many writes...
OPTIMIZE_EVERY_WRITES = 200
#: ...or when this many rows are outside an index (they are scanned: the parent_id prefilter slows).
OPTIMIZE_UNINDEXED_ROWS = 5000
#: Versions older than this are deleted by optimize (readers hold a version for far less).
KEEP_VERSIONS = timedelta(hours=1)
#: Progress of a running index build is logged this often.
PROGRESS_EVERY_S = 10.0


def table_name(embedder_id: str, dim: int) -> str:
    """Name of the table for one vector space, so two embedders never share a table."""
    slug = re.sub(r"[^a-z0-9]+", "_", embedder_id.lower()).strip("_")
    return f"{TABLE_PREFIX}{slug}_{dim}"


def schema_for(dim: int, embedder_id: str = "") -> pa.Schema:
    """Row layout; the embedder id rides in the schema metadata so tools can tell the vector space."""
    return pa.schema([
        pa.field("id", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("text", pa.string()),
        pa.field("summary", pa.string()),
        pa.field("parent_id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("persona", pa.string()),
        pa.field("task_id", pa.string()),
        pa.field("node", pa.string()),
        pa.field("turn", pa.int32()),
        pa.field("seq", pa.int32()),
        pa.field("timestamp", pa.float64()),
    ], metadata={EMBEDDER_KEY: embedder_id} if embedder_id else None)


def existing_tables(data_dir: Path | str) -> list[str]:
    """H-MEM table names under ``<data_dir>/memory_db`` without creating anything."""
    path = Path(data_dir) / DB_DIRNAME
    if not path.is_dir():
        return []
    import lancedb

    names = lancedb.connect(str(path)).list_tables().tables
    return sorted(n for n in names if n.startswith(TABLE_PREFIX))


def sql_str(value: str) -> str:
    """A SQL string literal (LanceDB filters are DataFusion SQL)."""
    return "'" + str(value).replace("'", "''") + "'"


def in_list(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


def ivf_pq_shape(rows: int, dim: int) -> tuple[int, int]:
    """(target_partition_size, num_sub_vectors): ~sqrt(rows) partitions, 8 dimensions per sub-vector.

    A target partition size, not a partition count: with ``num_partitions`` LanceDB 0.40's
    optimize() rebuilds the index as one partition (every query then scans all PQ codes), while a
    target size survives optimize and new rows.
    """
    partition_size = max(256, int(round(math.sqrt(rows))))
    sub = dim // 8 if dim % 8 == 0 else next(d for d in range(dim // 4, 0, -1) if dim % d == 0)
    return partition_size, max(1, sub)


def reciprocal_rank_fusion(ranked_lists: list[list[dict[str, Any]]], limit: int, columns: list[str],
                           k: int = 60) -> list[dict[str, Any]]:
    """Fuse ranked row lists by RRF (sum of 1/(k + rank)); robust to incomparable score scales."""
    fused: dict[str, dict[str, Any]] = {}
    for ranked in ranked_lists:
        for rank, row in enumerate(ranked, start=1):
            entry = fused.setdefault(row["id"], {**{c: row.get(c) for c in columns}, "score": 0.0})
            entry["score"] += 1.0 / (k + rank)
    return sorted(fused.values(), key=lambda r: -r["score"])[:limit]


@dataclass(frozen=True)
class IndexState:
    """What the background upkeep is doing and what the vector index covers."""

    vector_index: str          # none | building | ready | failed
    busy: str                  # "" or what the upkeep thread is running now
    indexed_rows: int
    unindexed_rows: int
    last_build_s: float | None
    error: str


class _AsyncReader:
    """Vector searches and scans through LanceDB's async API on one private event-loop thread.

    The sync API hops to its background loop about a dozen times per query (schema look-ups, row-id
    checks, batches); a whole query as one coroutine hops once, which halves search latency here.
    Opened lazily on the first search; sees other connections' writes (read_consistency_interval=0).
    """

    def __init__(self, path: Path, name: str):
        self._path, self._name = path, name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._table = None
        self._lock = threading.Lock()

    def _ready(self):
        with self._lock:
            if self._loop is None:
                import lancedb

                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="hmem-reader", daemon=True).start()

                async def open_table():
                    db = await lancedb.connect_async(str(self._path), read_consistency_interval=timedelta(0))
                    return await db.open_table(self._name)

                self._table = asyncio.run_coroutine_threadsafe(open_table(), loop).result()
                self._loop = loop
        return self._table

    def run(self, make_query: Callable[[Any], Any]) -> pa.Table:
        """make_query(async_table) -> an async query; returns its Arrow result."""
        table = self._ready()
        return asyncio.run_coroutine_threadsafe(make_query(table).to_arrow(), self._loop).result()

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop, self._table = None, None


class MemoryTable:
    """Thread-safe access to one H-MEM table: writes under a lock, reads lock-free (MVCC snapshots).

    The connection re-reads the latest version on every read (read_consistency_interval=0), so
    writes by other connections or processes are seen. Index builds and optimizes run on their
    own connection in one background thread; searches keep working on the previous version.
    """

    def __init__(self, data_dir: Path | str, settings: Memory, embedder_id: str, dim: int,
                 name: str | None = None):
        import lancedb

        self.settings = settings
        self.dim = dim
        self.embedder_id = embedder_id
        self.path = Path(data_dir) / DB_DIRNAME
        self.name = name or table_name(embedder_id, dim)
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._busy = ""
        self._error = ""
        self._last_build_s: float | None = None
        self._writes_since_optimize = 0
        self.optimize_every_writes = OPTIMIZE_EVERY_WRITES
        self._retry_build_at_rows = 0
        self._optimize_failed = False
        self._closed = False
        self._table = self._open_or_create()
        self._reader = _AsyncReader(self.path, self.name)
        self._has_vector_index = self._vector_index_present()
        self._row_indexes_done = False

    @classmethod
    def open_existing(cls, data_dir: Path | str, settings: Memory, name: str) -> "MemoryTable":
        """Open a table found by ``existing_tables`` (dimension and embedder read from its schema)."""
        import lancedb

        schema = lancedb.connect(str(Path(data_dir) / DB_DIRNAME)).open_table(name).schema
        embedder_id = (schema.metadata or {}).get(EMBEDDER_KEY, b"").decode() or "unknown"
        return cls(data_dir, settings, embedder_id, schema.field("vector").type.list_size, name=name)

    # -- setup ---------------------------------------------------------------------------------
    def _open_or_create(self):
        if self.name in self._db.list_tables().tables:
            table = self._db.open_table(self.name)
            field = table.schema.field("vector")
            if field.type.list_size != self.dim:
                raise ValueError(f"{self.path}/{self.name}: vectors have {field.type.list_size} dims, "
                                 f"embedder gives {self.dim}")
            return table
        try:
            return self._db.create_table(self.name, schema=schema_for(self.dim, self.embedder_id))
        except (ValueError, OSError) as exc:
            # Another connection created it between the check and here.
            if "already exists" in str(exc).lower():
                return self._db.open_table(self.name)
            raise

    def _vector_index_present(self) -> bool:
        return any(ix.name == VECTOR_INDEX for ix in self._table.list_indices())

    def _ensure_row_indexes(self) -> None:
        """BTree on parent_id and full-text on text/summary, made once the table has rows."""
        present = {ix.name for ix in self._table.list_indices()}
        from lancedb.index import FTS, BTree

        if "parent_id_idx" not in present:
            self._table.create_index("parent_id", config=BTree())
        for column in ("text", "summary"):
            if f"{column}_idx" not in present:
                self._table.create_index(column, config=FTS())

    # -- writes --------------------------------------------------------------------------------
    def add(self, rows: pa.Table) -> None:
        """Append rows in one commit (all or nothing), then schedule upkeep if due."""
        if rows.num_rows == 0:
            return
        schema = self._table.schema
        rows = rows.select(schema.names).cast(schema)
        with self._write_lock:
            self._table.add(rows)
            self._writes_since_optimize += 1
            if not self._row_indexes_done:
                try:
                    self._ensure_row_indexes()
                    self._row_indexes_done = True
                except Exception as exc:  # noqa: BLE001 - the rows are committed; searches scan instead
                    log.warning("memory: could not create the parent_id/full-text indexes (next write retries): %s",
                                exc)
        self.maybe_schedule_upkeep()

    # -- reads ---------------------------------------------------------------------------------
    def count(self, where: str | None = None) -> int:
        return self._table.count_rows(where)

    def vector_search(self, vector: np.ndarray, where: str, limit: int, exact: bool = False,
                      text: str | None = None, fts_columns: list[str] | None = None,
                      columns: list[str] | None = None) -> list[dict[str, Any]]:
        """Nearest rows by cosine among those matching ``where`` (a prefilter, not a post-filter).

        ``score`` is cosine similarity (1 - distance). With ``text`` the search is hybrid: the
        vector list and a full-text list over ``fts_columns`` (same prefilter) are fused by
        reciprocal rank, and ``score`` becomes the fused RRF score. ``exact`` bypasses the IVF_PQ
        index (right for small prefiltered sets); ``columns`` narrows what is read back.
        """
        columns = columns or ROW_COLUMNS
        query_vector = np.asarray(vector, dtype=np.float32)

        def nearest(table):
            query = table.query().nearest_to(query_vector).distance_type("cosine").where(where).limit(limit)
            if exact:
                query = query.bypass_vector_index()
            else:
                query = query.nprobes(self.settings.nprobes).refine_factor(self.settings.refine_factor)
            return query.select(columns + ["_distance"])

        rows = self._reader.run(nearest).to_pylist()
        for row in rows:
            row["score"] = 1.0 - float(row.pop("_distance"))
        if not text:
            return rows
        found = (self._table.search(text, query_type="fts", fts_columns=fts_columns or ["text"])
                 .where(where, prefilter=True).limit(limit).select(columns + ["_score"]).to_arrow().to_pylist())
        return reciprocal_rank_fusion([rows, found], limit, columns)

    def scan_nearest(self, vector: np.ndarray, where: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """Exact cosine over the few rows a scalar filter selects (an episode's chunks), scored here.

        For a handful of rows this costs less than a prefiltered vector query (a BTree lookup and
        one small matrix product instead of a search plan); ``score`` means the same: 1 - cosine distance.
        """
        table = self._reader.run(lambda t: t.query().where(where).select((columns or ROW_COLUMNS) + ["vector"]))
        if table.num_rows == 0:
            return []
        matrix = table["vector"].combine_chunks().values.to_numpy(zero_copy_only=False).reshape(table.num_rows, -1)
        query = np.asarray(vector, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
        scores = (matrix @ query) / np.where(norms == 0, 1.0, norms)
        rows = table.drop_columns(["vector"]).to_pylist()
        for row, score in zip(rows, scores):
            row["score"] = float(score)
        return rows

    def rows(self, where: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """All rows matching ``where`` (a plain scan, for episodes and listings)."""
        query = self._table.search().where(where).select(columns or ROW_COLUMNS).limit(None)
        return query.to_arrow().to_pylist()

    # -- upkeep --------------------------------------------------------------------------------
    def maybe_schedule_upkeep(self) -> None:
        """Start the background IVF_PQ build or optimize when due; never blocks the caller."""
        with self._state_lock:
            worker = self._worker
            if self._closed or (worker is not None and worker.is_alive() and worker is not threading.current_thread()):
                return
            rows = self._table.count_rows()
            job = None
            if not self._has_vector_index and self._vector_index_present():
                self._has_vector_index = True  # another connection built it
            if not self._has_vector_index and rows >= max(self.settings.index_threshold_rows,
                                                          self._retry_build_at_rows):
                job = "build"
            elif (self._writes_since_optimize >= self.optimize_every_writes
                  or (not self._optimize_failed and self._unindexed_rows() >= OPTIMIZE_UNINDEXED_ROWS)):
                job = "optimize"
            if job is None:
                return
            self._busy = "building IVF_PQ index" if job == "build" else "optimizing"  # shown at once
            self._worker = threading.Thread(target=self._run_job, args=(job,), name=f"hmem-{job}", daemon=True)
            self._worker.start()

    def build_index_now(self) -> None:
        """Build the IVF_PQ index in the caller's thread (benchmarks, tests, CLI maintenance)."""
        self._build_index(self._table)

    def _run_job(self, job: str) -> None:
        """A build is followed by an optimize: rows written meanwhile may sit outside the scalar/FTS indexes."""
        import lancedb

        table = lancedb.connect(str(self.path)).open_table(self.name)
        steps = ["build", "optimize"] if job == "build" else ["optimize"]
        try:
            for step in steps:
                with self._state_lock:
                    self._busy = "building IVF_PQ index" if step == "build" else "optimizing"
                try:
                    if step == "build":
                        self._build_index(table)
                    else:
                        self._optimize(table)
                except Exception as exc:  # noqa: BLE001 - a failed upkeep must not kill the backend
                    log.error("memory: %s failed: %s", step, exc)
                    with self._state_lock:
                        self._error = f"{step}: {exc}"
                        # A failed optimize waits for optimize_every_writes writes before trying again.
                        self._optimize_failed = step == "optimize"
                        if step == "build":
                            # Try again once the table has grown by a tenth of the threshold.
                            self._retry_build_at_rows = (table.count_rows()
                                                         + self.settings.index_threshold_rows // 10)
                    return
        finally:
            with self._state_lock:
                self._busy = ""
        # A build may have come due while this job ran (writes skip scheduling while one runs).
        self.maybe_schedule_upkeep()

    def _build_index(self, table) -> None:
        from lancedb.index import IvfPq

        rows = table.count_rows()
        partition_size, sub_vectors = ivf_pq_shape(rows, self.dim)
        log.info("memory: building IVF_PQ index over %d rows (~%d partitions of %d, %d sub-vectors); "
                 "search stays exact meanwhile", rows, max(1, rows // partition_size), partition_size, sub_vectors)
        started = time.monotonic()
        done = threading.Event()

        def progress() -> None:
            while not done.wait(PROGRESS_EVERY_S):
                log.info("memory: IVF_PQ index build running, %.0f s elapsed", time.monotonic() - started)

        ticker = threading.Thread(target=progress, name="hmem-build-progress", daemon=True)
        ticker.start()
        try:
            table.create_index("vector", config=IvfPq(distance_type="cosine", target_partition_size=partition_size,
                                                      num_sub_vectors=sub_vectors), name=VECTOR_INDEX)
        finally:
            done.set()
        elapsed = time.monotonic() - started
        with self._state_lock:
            self._has_vector_index = True
            self._last_build_s = elapsed
            self._error = ""
        self._table.checkout_latest()
        log.info("memory: IVF_PQ index ready after %.1f s (%d rows)", elapsed, rows)

    def _optimize(self, table) -> None:
        started = time.monotonic()
        with self._state_lock:
            self._writes_since_optimize = 0
        table.optimize(cleanup_older_than=KEEP_VERSIONS)
        with self._state_lock:
            self._optimize_failed = False
            if self._error.startswith("optimize"):
                self._error = ""
        log.info("memory: optimized table %s in %.1f s", self.name, time.monotonic() - started)

    def _unindexed_rows(self) -> int:
        """The most rows any index (vector, BTree, FTS) leaves to a scan."""
        worst = 0
        for index in self._table.list_indices():
            stats = self._table.index_stats(index.name)
            worst = max(worst, stats.num_unindexed_rows if stats else 0)
        return worst

    def index_state(self) -> IndexState:
        with self._state_lock:
            if not self._has_vector_index and self._vector_index_present():
                self._has_vector_index = True  # another connection built it
            busy, error, last = self._busy, self._error, self._last_build_s
            has_index = self._has_vector_index
        if has_index:
            stats = self._table.index_stats(VECTOR_INDEX)
            indexed = stats.num_indexed_rows if stats else 0
            unindexed = stats.num_unindexed_rows if stats else self._table.count_rows()
            state = "ready"
        else:
            indexed, unindexed = 0, self._table.count_rows()
            state = "building" if busy.startswith("building") else ("failed" if error.startswith("build") else "none")
        return IndexState(state, busy, indexed, unindexed, last, error)

    def stats(self) -> MemoryStats:
        """Counts and index state of this table."""
        state = self.index_state()
        rows = self.count()
        summaries = self.count("parent_id IS NULL")
        return MemoryStats(path=str(self.path), table=self.name, embedder=self.embedder_id, dim=self.dim, rows=rows,
                           summaries=summaries, chunks=rows - summaries, vector_index=state.vector_index,
                           busy=state.busy, indexed_rows=state.indexed_rows, unindexed_rows=state.unindexed_rows,
                           index_threshold_rows=self.settings.index_threshold_rows,
                           last_build_s=state.last_build_s, error=state.error)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for the background upkeep (and any job it chained) to finish; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            worker = self._worker
            if worker is None:
                return True
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                return False
            if self._worker is worker:
                return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop scheduling upkeep and give a running job ``timeout`` seconds (a killed build is safe)."""
        with self._state_lock:
            self._closed = True
        self._reader.close()
        if not self.wait_idle(timeout):
            log.warning("memory: background %s still running at close; it is safe to abandon", self._busy)
