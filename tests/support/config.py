"""Write a temporary config dir: the project's real TOML files with dotted-key overrides."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import toml

from a4ps.config.loader import project_root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _set(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    if value is _DELETE:
        del data[leaf]
    else:
        data[leaf] = value


_DELETE = object()
DELETE = _DELETE

# Plumbing tests run on the small, fast SmolLM2; tests of the capable default name it explicitly.
PLUMBING_MODEL = "smollm2-135m"


def plumbing_model(settings: Any) -> Any:
    """Point loaded Settings at PLUMBING_MODEL (for tests that call load_settings() directly)."""
    settings.models.embedded.model = PLUMBING_MODEL
    settings.models.embedded.model_path = ""
    settings.graph.tools = False
    return settings


def write_config(directory: Path, settings: dict[str, Any] | None = None,
                 codex: dict[str, Any] | None = None) -> Path:
    """Copy config/ into `directory`, applying overrides like {"graph.max_turns": 2} (DELETE removes).

    The embedded model is PLUMBING_MODEL unless `settings` sets models.embedded.model itself, and BRICK
    asks for no tools (graph.tools false: the small model's random forge requests would make every
    plumbing task minutes long) unless `settings` sets graph.tools; the forge has its own tests.
    """
    directory.mkdir(parents=True, exist_ok=True)
    source = project_root() / "config"
    settings = {"models.embedded.model": PLUMBING_MODEL, "graph.tools": False, **(settings or {})}
    for name, overrides in (("settings.toml", settings), ("codex.toml", codex)):
        data = toml.loads((source / name).read_text())
        for key, value in (overrides or {}).items():
            _set(data, key, value)
        (directory / name).write_text(toml.dumps(data))
    return directory
