"""MemoryStore: what the rest of BAT OS calls to remember finished tasks and recall them (H-MEM)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from a4ps.config.schema import Memory
from a4ps.memory.embedders import Embedder, make_embedder
from a4ps.memory.records import KIND_PLAN, KIND_SUMMARY, KIND_UTTERANCE, Episode, MemoryChunk, MemoryHit, MemoryStats
from a4ps.memory.table import MemoryTable, in_list, schema_for

log = logging.getLogger(__name__)

#: Chunks fetched per top summary before the per-episode cap (episodes rarely hold more).
_CHUNK_FETCH_PER_EPISODE = 64
#: What the summary stage reads back (the hit's episode context).
_EPISODE_COLUMNS = ["id", "text", "summary", "task_id", "timestamp", "kind", "persona", "node", "turn"]


class MemoryStore:
    """Hierarchical long-term memory: one level-1 summary per task, its plan and utterances as chunks.

    Thread-safe: writes are serialised by the table's lock, reads use LanceDB snapshots and see
    other connections' writes. Past ``index_threshold_rows`` an IVF_PQ index is built in the
    background; searches keep working (exactly) while it builds.
    """

    def __init__(self, data_dir: Path | str, settings: Memory, embedder: Embedder):
        self.settings = settings
        self.embedder = embedder
        self.table = MemoryTable(data_dir, settings, embedder.id, embedder.dim)

    # -- writing -------------------------------------------------------------------------------
    def remember_task(self, task_id: str, task_text: str, summary: str, plan: Any,
                      utterances: Sequence[dict[str, Any]]) -> str:
        """Store a finished task as one episode (one atomic commit); returns the episode id.

        ``plan`` may be text or JSON-able data; each utterance needs ``text`` and may carry
        ``persona``, ``node`` and ``turn``. Empty texts are skipped (nothing to recall).
        """
        if not str(summary).strip():
            raise ValueError("remember_task: summary is empty")
        plan_text = plan if isinstance(plan, str) else json.dumps(plan, ensure_ascii=False)
        now = time.time()
        episode_id = uuid.uuid4().hex
        rows: list[dict[str, Any]] = [dict(id=episode_id, text=str(task_text), summary=str(summary), parent_id=None,
                                           kind=KIND_SUMMARY, persona="ALFRED", task_id=str(task_id), node="synthesize",
                                           turn=0, seq=0, timestamp=now)]
        embed_texts = [f"{task_text}\n{summary}"]
        chunks: list[tuple[str, str, str, int, str]] = []
        if plan_text and plan_text.strip():
            chunks.append((KIND_PLAN, "ALFRED", "plan", 0, plan_text))
        for i, utterance in enumerate(utterances):
            if "text" not in utterance:
                raise ValueError(f"remember_task: utterance {i} has no 'text'")
            text = str(utterance["text"])
            if text.strip():
                chunks.append((KIND_UTTERANCE, str(utterance.get("persona", "")), str(utterance.get("node", "")),
                               int(utterance.get("turn", 0) or 0), text))
        for seq, (kind, persona, node, turn, text) in enumerate(chunks, start=1):
            rows.append(dict(id=uuid.uuid4().hex, text=text, summary=str(summary), parent_id=episode_id, kind=kind,
                             persona=persona, task_id=str(task_id), node=node, turn=turn, seq=seq, timestamp=now))
            embed_texts.append(text)
        vectors = self.embedder.embed(embed_texts)
        self.table.add(_to_arrow(rows, vectors, self.embedder.dim))
        log.info("memory: remembered task %s as episode %s (%d chunks)", task_id, episode_id, len(chunks))
        return episode_id

    # -- reading -------------------------------------------------------------------------------
    def recall(self, query: str, k: int = 5, hybrid: bool | None = None) -> list[MemoryHit]:
        """The ``k`` most relevant memories for ``query``, for ALFRED's plan.

        Two levels: the ``top_summaries`` nearest summaries (prefilter ``parent_id IS NULL``, through
        the IVF_PQ index once built), then the nearest chunks of just those episodes (prefilter on
        parent_id; exact, as that set is small), at most ``chunks_per_summary`` per episode, best first.
        """
        if not query.strip() or k <= 0:
            return []
        vector = self.embedder.embed([query])[0]
        use_hybrid = self.settings.hybrid if hybrid is None else hybrid
        return self.recall_vector(vector, k, text=query if use_hybrid else None)

    def recall_vector(self, vector: np.ndarray, k: int, text: str | None = None, exact: bool = False) -> list[MemoryHit]:
        """Hierarchical search with a ready query vector (``text`` adds full-text: hybrid).

        ``exact`` bypasses the IVF_PQ index in the summary stage too (benchmarks, tests).
        """
        episodes = self.table.vector_search(vector, "parent_id IS NULL", self.settings.top_summaries, exact=exact,
                                            text=text, fts_columns=["text", "summary"], columns=_EPISODE_COLUMNS)
        if not episodes:
            return []
        chunk_filter = in_list("parent_id", [e["id"] for e in episodes])
        if text:  # hybrid: LanceDB's vector and full-text lists, fused
            chunk_rows = self.table.vector_search(vector, chunk_filter, len(episodes) * _CHUNK_FETCH_PER_EPISODE,
                                                  exact=True, text=text, fts_columns=["text"])
        else:  # the top episodes' chunks are few: one scalar scan (BTree on parent_id), scored exactly
            chunk_rows = self.table.scan_nearest(vector, chunk_filter)
        by_id = {e["id"]: e for e in episodes}
        per_episode: dict[str, int] = {}
        hits: list[MemoryHit] = []
        for row in sorted(chunk_rows, key=lambda r: -r["score"]):
            parent = row["parent_id"]
            if per_episode.get(parent, 0) >= self.settings.chunks_per_summary:
                continue
            per_episode[parent] = per_episode.get(parent, 0) + 1
            hits.append(_hit(row, by_id[parent]))
        for episode in episodes:
            if episode["id"] not in per_episode:
                hits.append(_hit(episode, episode))
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def recent_episodes(self, limit: int = 20, since: float | datetime | None = None) -> list[Episode]:
        """The newest ``limit`` episodes (newest first), optionally only those after ``since``.

        For the curator: each episode carries its summary and all its chunks in order.
        """
        where = "parent_id IS NULL"
        if since is not None:
            stamp = since.timestamp() if isinstance(since, datetime) else float(since)
            where += f" AND timestamp > {stamp!r}"
        heads = self.table.rows(where, ["id", "timestamp"])
        heads.sort(key=lambda r: (-r["timestamp"], r["id"]))
        ids = [h["id"] for h in heads[:max(0, limit)]]
        if not ids:
            return []
        summaries = {r["id"]: r for r in self.table.rows(in_list("id", ids))}
        chunks: dict[str, list[MemoryChunk]] = {i: [] for i in ids}
        for row in self.table.rows(in_list("parent_id", ids)):
            chunks[row["parent_id"]].append(MemoryChunk.from_row(row))
        episodes = []
        for episode_id in ids:
            head = summaries[episode_id]
            episodes.append(Episode(id=episode_id, task_id=head["task_id"] or "", task_text=head["text"] or "",
                                    summary=head["summary"] or "", timestamp=float(head["timestamp"]),
                                    chunks=sorted(chunks[episode_id], key=lambda c: c.seq)))
        return episodes

    def stats(self) -> MemoryStats:
        """Rows, summaries, chunks and the vector index state."""
        return self.table.stats()

    def close(self, timeout: float = 5.0) -> None:
        """Let a running background index job finish (up to ``timeout`` s) before shutdown."""
        self.table.close(timeout)


def open_memory(data_dir: Path | str, settings: Memory,
                ollama_embed: Callable[[list[str]], list[list[float]]] | None = None,
                ollama_model: str = "") -> MemoryStore:
    """Build the store with the embedder named by ``settings.embedder`` (composition-root helper)."""
    return MemoryStore(data_dir, settings, make_embedder(settings.embedder, ollama_embed, ollama_model))


def _to_arrow(rows: list[dict[str, Any]], vectors: np.ndarray, dim: int) -> pa.Table:
    schema = schema_for(dim)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(rows), dim):
        raise ValueError(f"embedder returned {vectors.shape}, expected ({len(rows)}, {dim})")
    columns = {name: [r[name] for r in rows] for name in schema.names if name != "vector"}
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim)
    return pa.table({name: columns[name] for name in schema.names}, schema=schema)


def _hit(row: dict[str, Any], episode: dict[str, Any]) -> MemoryHit:
    return MemoryHit(id=row["id"], episode_id=episode["id"], task_id=row["task_id"] or "",
                     task_text=episode["text"] or "", summary=episode["summary"] or "", kind=row["kind"] or "",
                     persona=row["persona"] or "", node=row["node"] or "", turn=int(row["turn"] or 0),
                     text=row["text"] or "", timestamp=float(row["timestamp"] or 0.0), score=float(row["score"]),
                     episode_score=float(episode["score"]))
