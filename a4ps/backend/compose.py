"""Builders shared by the backend and the one-shot CLI commands, so both wire organs the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from langgraph.checkpoint.sqlite import SqliteSaver

from a4ps.config import Codex, Settings
from a4ps.events import EventBus
from a4ps.forge import ToolForge, ToolRegistry, ToolRunner
from a4ps.memory import MemoryStore, open_memory
from a4ps.models import ModelManager, select_provider
from a4ps.protos import ProtoManager
from a4ps.sandbox import SecureCodeExecutor

if TYPE_CHECKING:
    import threading
    from typing import Callable

    from a4ps.adapters.registry import AdapterRegistry

    from a4ps.backend.tasks import TaskQueue
    from a4ps.curator.curator import Curator
    from a4ps.finetune.tuner import FineTuner
    from a4ps.graph.voice import Voices


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


def build_curator(settings: Settings, codex: Codex, models: ModelManager, protos: ProtoManager, voices: "Voices",
                  memory: MemoryStore, tasks: "TaskQueue", bus: EventBus, stop: "threading.Event") -> "Curator":
    """The Curator (organ 8): ALFRED judges remembered episodes; the best become golden samples."""
    from a4ps.config.schema import STEWARD
    from a4ps.curator.curator import Curator
    from a4ps.curator.golden import FOLDER, GoldenSet
    from a4ps.curator.judge import EpisodeJudge
    from a4ps.curator.ledger import CurationLedger

    def judge_model() -> str:  # what the provenance names: the file the embedded base runs, or the tag
        if models.provider_name == "embedded":
            return f"embedded:{models.provider.model_path.name}"
        return f"{models.provider_name}:{protos.get(STEWARD).model}"

    def task_status(task_id: str) -> str | None:
        task = tasks.find(task_id)
        return task.status if task is not None else None

    data = Path(settings.data_dir)
    return Curator(settings.autopoiesis, codex, CurationLedger(data / "curator"), GoldenSet(data / FOLDER),
                   EpisodeJudge(voices, codex, judge_model), lambda limit: memory.recent_episodes(limit=limit),
                   task_status, lambda: tasks.idle, bus, stop)


def build_adapters(settings: Settings, codex: Codex, models: ModelManager, protos: ProtoManager, voices: "Voices",
                   tasks: "TaskQueue", bus: EventBus, stop: "threading.Event", saved: object,
                   save: "Callable[[str], object]") -> "AdapterRegistry":
    """The adapters (organ 9's gate and swap): the choice from the image, applied before the first task."""
    from a4ps.adapters.choice import AdapterChoice
    from a4ps.adapters.gate import AdapterGate
    from a4ps.adapters.jobs import FOLDER
    from a4ps.adapters.registry import AdapterRegistry
    from a4ps.adapters.swap import AdapterSwap
    from a4ps.config.schema import STEWARD

    def judge_model() -> str:
        return f"{models.provider_name}:{protos.get(STEWARD).model}"

    root = Path(settings.data_dir) / FOLDER
    choice = AdapterChoice(saved)
    gate = AdapterGate(settings.autopoiesis, models, voices, codex, settings.models.max_tokens,
                       settings.models.repeat_penalty, judge_model)
    swap = AdapterSwap(root, models, protos, choice, bus, save)
    swap.restore()
    return AdapterRegistry(root, protos, choice, gate, swap, lambda: tasks.idle, bus, stop)


def build_finetune(settings: Settings, codex: Codex, models: ModelManager, tasks: "TaskQueue", bus: EventBus,
                   stop: "threading.Event") -> "FineTuner":
    """The fine-tune loop (organ 9's training): a persona's LoRA over the GGUF the embedded provider runs."""
    from a4ps.finetune.tuner import FineTuner
    from a4ps.models.embedded import resolve_model_path

    def base_model() -> Path:
        if models.provider_name == "embedded":
            return models.provider.model_path
        return resolve_model_path(settings.models.embedded)

    return FineTuner(settings.autopoiesis, Path(settings.data_dir), base_model,
                     lambda: [persona.name for persona in codex.persona], lambda: tasks.idle, bus, stop)
