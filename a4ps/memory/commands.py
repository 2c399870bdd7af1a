"""`a4ps memory search|stats`: look into the long-term memory from a shell (read-only)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def add_commands(subparsers: Any) -> None:
    """Register ``memory search QUERY`` and ``memory stats`` on the main CLI's subparsers."""
    memory = subparsers.add_parser("memory", help="search and inspect the long-term memory (H-MEM)")
    sub = memory.add_subparsers(dest="memory_command", metavar="{search,stats}")
    sub.required = True

    search = sub.add_parser("search", help="hierarchical search: nearest task summaries, then their chunks")
    search.add_argument("query", help="what to look for")
    search.add_argument("-k", type=int, default=5, help="how many hits (default 5)")
    search.add_argument("--hybrid", action=argparse.BooleanOptionalAction, default=None,
                        help="add full-text matching (default: settings memory.hybrid)")
    search.set_defaults(func=lambda args, settings: search_command(args, settings))

    stats = sub.add_parser("stats", help="rows, summaries, chunks and index state")
    stats.add_argument("--json", action="store_true", help="one JSON object per table")
    stats.set_defaults(func=lambda args, settings: stats_command(args, settings))


def _no_memory(settings: Any) -> str | None:
    from a4ps.memory.table import DB_DIRNAME, existing_tables

    path = Path(settings.data_dir) / DB_DIRNAME
    if not path.is_dir():
        return f"No memory yet: {path} does not exist (every finished task is stored there)."
    if not existing_tables(settings.data_dir):
        return f"No memory yet: {path} holds no memory table."
    return None


def search_command(args: argparse.Namespace, settings: Any) -> int:
    """Print the hits for ``args.query`` with their scores; 0 also when nothing matches."""
    from a4ps.memory.embedders import EmbedderError
    from a4ps.memory.store import MemoryStore
    from a4ps.memory.table import existing_tables, table_name

    if args.k < 1:
        print("memory search: -k must be at least 1")
        return 2
    missing = _no_memory(settings)
    if missing:
        print(missing)
        return 0
    try:
        embedder = _embedder_for(settings)
    except EmbedderError as exc:
        print(f"memory search: {exc}")
        return 1
    name = table_name(embedder.id, embedder.dim)
    if name not in existing_tables(settings.data_dir):
        print(f"No memories embedded with {embedder.id} yet (tables: {', '.join(existing_tables(settings.data_dir))}).")
        return 0
    store = MemoryStore(settings.data_dir, settings.memory, embedder)
    hits = store.recall(args.query, args.k, hybrid=args.hybrid)
    if not hits:
        print(f"No memories match {args.query!r}.")
        return 0
    score_name = "rrf" if (settings.memory.hybrid if args.hybrid is None else args.hybrid) else "cosine"
    print(f"{len(hits)} hit(s) for {args.query!r} ({score_name} score):")
    for i, hit in enumerate(hits, start=1):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(hit.timestamp))
        who = f"{hit.persona} {hit.kind}" + (f" ({hit.node}, turn {hit.turn})" if hit.kind == "utterance" else "")
        print(f"{i:2d}. {hit.score:.4f}  {who}  task {hit.task_id} at {when}")
        print(f"    {_clip(hit.text, 300)}")
        print(f"    task: {_clip(hit.task_text, 120)}")
        print(f"    summary ({hit.episode_score:.4f}): {_clip(hit.summary, 160)}")
    return 0


def stats_command(args: argparse.Namespace, settings: Any) -> int:
    """Print counts and index state of every memory table."""
    from a4ps.memory.table import MemoryTable, existing_tables

    missing = _no_memory(settings)
    if missing:
        print(json.dumps({"rows": 0, "message": missing}) if args.json else missing)
        return 0
    for name in existing_tables(settings.data_dir):
        stats = MemoryTable.open_existing(settings.data_dir, settings.memory, name).stats()
        if args.json:
            print(json.dumps(stats.as_dict()))
            continue
        print(f"{stats.path}/{stats.table}  (embedder {stats.embedder}, {stats.dim} dims)")
        print(f"  rows {stats.rows}: {stats.summaries} task summaries, {stats.chunks} chunks")
        index = {"none": f"none (built past {stats.index_threshold_rows} rows; exact search until then)",
                 "building": "building", "failed": "failed", "ready": "IVF_PQ ready"}[stats.vector_index]
        print(f"  vector index: {index}; indexed {stats.indexed_rows}, not yet indexed {stats.unindexed_rows}")
        if stats.error:
            print(f"  last error: {stats.error}")
    return 0


def _embedder_for(settings: Any):
    from a4ps.memory.embedders import make_embedder

    if settings.memory.embedder != "ollama":
        return make_embedder(settings.memory.embedder)
    from a4ps.models.ollama_provider import OllamaProvider

    provider = OllamaProvider(settings.models.ollama)
    return make_embedder("ollama", provider.embed, settings.models.ollama.embed_model)


def _clip(text: str, width: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"
