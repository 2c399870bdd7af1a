"""Plain records the memory hands out (hits, episodes, stats), so callers never see Arrow rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Row kinds: one summary per task (level 1), then its chunks.
KIND_SUMMARY = "summary"
KIND_PLAN = "plan"
KIND_UTTERANCE = "utterance"


@dataclass(frozen=True)
class MemoryChunk:
    """One stored row: a level-1 summary (parent_id None) or an episodic chunk."""

    id: str
    kind: str
    text: str
    summary: str
    parent_id: str | None
    persona: str
    task_id: str
    node: str
    turn: int
    seq: int
    timestamp: float

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "MemoryChunk":
        return cls(id=row["id"], kind=row["kind"] or "", text=row["text"] or "", summary=row["summary"] or "",
                   parent_id=row["parent_id"], persona=row["persona"] or "", task_id=row["task_id"] or "",
                   node=row["node"] or "", turn=int(row["turn"] or 0), seq=int(row["seq"] or 0),
                   timestamp=float(row["timestamp"] or 0.0))


@dataclass(frozen=True)
class MemoryHit:
    """A recalled memory: a chunk of a relevant past task, with that task's context.

    ``score`` is the cosine similarity of this row to the query (or the fused rank score in hybrid
    mode); ``episode_score`` the same for the episode's summary. For an episode stored without
    chunks the hit is the summary row itself (kind "summary").
    """

    id: str
    episode_id: str
    task_id: str
    task_text: str
    summary: str
    kind: str
    persona: str
    node: str
    turn: int
    text: str
    timestamp: float
    score: float
    episode_score: float


@dataclass(frozen=True)
class Episode:
    """One remembered task: ALFRED's summary row and its chunks in the order they happened."""

    id: str
    task_id: str
    task_text: str
    summary: str
    timestamp: float
    chunks: list[MemoryChunk] = field(default_factory=list)


@dataclass(frozen=True)
class MemoryStats:
    """Counts and index state, for the UI status line and ``a4ps memory stats``."""

    path: str
    table: str
    embedder: str
    dim: int
    rows: int
    summaries: int
    chunks: int
    vector_index: str           # none | building | ready | failed
    busy: str                   # what the background upkeep runs now, "" when idle
    indexed_rows: int
    unindexed_rows: int
    index_threshold_rows: int
    last_build_s: float | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
