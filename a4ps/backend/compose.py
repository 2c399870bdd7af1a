"""Builders shared by the backend and the one-shot CLI commands, so both wire organs the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from a4ps.config import Codex, Settings
from a4ps.events import EventBus
from a4ps.forge import ToolForge, ToolRegistry, ToolRunner
from a4ps.memory import MemoryStore, open_memory
from a4ps.models import ModelManager, select_provider
from a4ps.protos import ProtoManager
from a4ps.sandbox import SecureCodeExecutor


def build_models(settings: Settings, codex: Codex) -> ModelManager:
    provider, reason = select_provider(settings.models, {p.models["ollama"] for p in codex.persona})
    return ModelManager(provider, json_retries=settings.models.json_retries, reason=reason)


def build_executor(settings: Settings) -> SecureCodeExecutor:
    return SecureCodeExecutor(settings.sandbox, Path(settings.data_dir) / "sandbox")


def build_registry(settings: Settings) -> ToolRegistry:
    return ToolRegistry(Path(settings.data_dir) / "tools")


def build_runner(settings: Settings) -> ToolRunner:
    return ToolRunner(build_executor(settings), build_registry(settings))


def build_forge(settings: Settings, codex: Codex, models: ModelManager, protos: ProtoManager,
                bus: EventBus) -> ToolForge:
    return ToolForge(models, protos, codex, build_runner(settings), bus, settings.forge.max_retries)


def build_memory(settings: Settings, models: ModelManager) -> MemoryStore:
    """H-MEM; the embedded provider's `embed` is then served by the memory's embedding model."""
    ollama = models.provider_name == "ollama"
    memory = open_memory(settings.data_dir, settings.memory, ollama_embed=models.embed if ollama else None,
                         ollama_model=settings.models.ollama.embed_model if ollama else "")
    if not ollama:
        models.set_embedder(lambda texts: memory.embedder.embed(texts).tolist())
    return memory


def build_checkpointer(settings: Settings) -> SqliteSaver:
    """LangGraph's SQLite checkpointer in the data dir: each task's graph progress, node by node."""
    path = Path(settings.data_dir) / "graph_checkpoints.sqlite"
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))
