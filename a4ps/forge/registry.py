"""The tool registry: tools on disk under <data_dir>/tools/<name>/ and their validation status.

Tools are data here: their source is read and handed to the sandbox, never imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OK, BROKEN, VALIDATING = "ok", "broken", "validating"


def source_hash(code: str, tests: str) -> str:
    return hashlib.sha256((code + "\0" + tests).encode()).hexdigest()


@dataclass
class Tool:
    name: str
    docstring: str
    signature: str
    spec: str
    source: str
    tests: str
    test_names: list[str]
    model: str
    created_at: float = field(default_factory=time.time)
    source_hash: str = ""
    status: str = OK
    validation: dict[str, Any] = field(default_factory=dict)

    def as_map(self) -> dict[str, Any]:
        return asdict(self)

    def manifest(self) -> dict[str, Any]:
        """What manifest.json holds (the source and tests live in their own files)."""
        data = self.as_map()
        del data["source"], data["tests"]
        return data


class ToolRegistry:
    """Thread-safe index of the tools in a folder; writes are atomic (temp dir, then rename)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._tools: dict[str, Tool] = {}
        self._lock = threading.RLock()

    def load(self) -> list[Tool]:
        """Read every tool folder; unreadable or tampered ones are logged and marked broken."""
        self.directory.mkdir(parents=True, exist_ok=True)
        loaded = []
        for folder in sorted(p for p in self.directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                manifest = json.loads((folder / "manifest.json").read_text())
                code = (folder / "tool.py").read_text()
                tests = (folder / "test_tool.py").read_text()
                tool = Tool(**{**manifest, "source": code, "tests": tests})
            except (OSError, ValueError, TypeError) as exc:
                log.warning("tool folder %s is unreadable (%s); skipped", folder.name, exc)
                continue
            if tool.source_hash != source_hash(code, tests):
                tool.status = BROKEN
                tool.validation = {"error": "source changed on disk since validation (hash mismatch)"}
                log.warning("tool %s: source hash mismatch; marked broken", tool.name)
            loaded.append(tool)
        with self._lock:
            for tool in loaded:
                self._tools[tool.name] = tool
        return loaded

    def save(self, tool: Tool) -> Path:
        """Write source, tests and manifest; replaces an older tool of the same name."""
        tool.source_hash = source_hash(tool.source, tool.tests)
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / tool.name
        staging = self.directory / f".{tool.name}.{os.getpid()}.{time.time_ns()}"
        staging.mkdir()
        (staging / "tool.py").write_text(tool.source)
        (staging / "test_tool.py").write_text(tool.tests)
        (staging / "manifest.json").write_text(json.dumps(tool.manifest(), indent=2))
        with self._lock:
            if final.exists():
                trash = self.directory / f".{tool.name}.old.{time.time_ns()}"
                final.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
            staging.rename(final)
            self._tools[tool.name] = tool
        return final

    def set_status(self, name: str, status: str, validation: dict[str, Any]) -> Tool:
        """Record a status; only a verdict (ok/broken) is written to the manifest, never 'validating'."""
        with self._lock:
            tool = self._tools[name]
            tool.status, tool.validation = status, validation
            if status != VALIDATING and (self.directory / name).is_dir():
                (self.directory / name / "manifest.json").write_text(json.dumps(tool.manifest(), indent=2))
            return tool

    def get(self, name: str) -> Tool | None:
        with self._lock:
            return self._tools.get(name)

    def all(self) -> list[Tool]:
        with self._lock:
            return sorted(self._tools.values(), key=lambda t: t.created_at)

    def usable(self) -> list[Tool]:
        """Tools offered to BRICK: only those whose tests pass."""
        return [tool for tool in self.all() if tool.status == OK]

    def path_of(self, name: str) -> Path:
        return self.directory / name
