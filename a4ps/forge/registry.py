"""The tool registry: tools on disk under <data_dir>/tools/<name>/ and their validation status.

Tools are data here: their source is read and handed to the sandbox, never imported.

Layout: <name>/manifest.json names the current version; that version's files are <name>/v<N>/tool.py
and <name>/v<N>/test_tool.py, written once and never changed. A new version's files are written
beside the old ones and the manifest is then replaced atomically (temp file, fsync, rename), so a
crash at any point leaves either the old tool or the new one, never a mix. Folders from before
versions (tool.py beside manifest.json) load as version 1.
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

from a4ps.atomicfile import sync_folder

log = logging.getLogger(__name__)

OK, BROKEN, VALIDATING = "ok", "broken", "validating"
MANIFEST, SOURCE, TESTS = "manifest.json", "tool.py", "test_tool.py"
_STALE_STAGING_S = 3600.0


def source_hash(code: str, tests: str) -> str:
    return hashlib.sha256((code + "\0" + tests).encode()).hexdigest()


def _write_durable(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers (and a crash) see the old or the new file, whole."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        _write_durable(temp, text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


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
    version: int = 0  # set by the registry when saved: 1 for a new name, +1 for each replacement

    def as_map(self) -> dict[str, Any]:
        return asdict(self)

    def manifest(self) -> dict[str, Any]:
        """What manifest.json holds (the source and tests live in their own files)."""
        data = self.as_map()
        del data["source"], data["tests"]
        return data


class ToolRegistry:
    """Thread-safe index of the tools in a folder; every write is atomic (see the module doc)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._tools: dict[str, Tool] = {}
        self._lock = threading.RLock()

    # --- reading -----------------------------------------------------------------------------------
    def _files_dir(self, folder: Path, version: int, manifest: dict[str, Any]) -> Path:
        return folder / f"v{version}" if "version" in manifest else folder  # no version: pre-version layout

    def _read(self, folder: Path) -> Tool:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        version = int(manifest.get("version", 1))
        files = self._files_dir(folder, version, manifest)
        code = (files / SOURCE).read_text(encoding="utf-8")
        tests = (files / TESTS).read_text(encoding="utf-8")
        tool = Tool(**{**manifest, "version": version, "source": code, "tests": tests})
        if tool.source_hash != source_hash(code, tests):
            tool.status = BROKEN
            tool.validation = {"error": "source changed on disk since validation (hash mismatch)"}
            log.warning("tool %s: source hash mismatch; marked broken", tool.name)
        return tool

    def load(self) -> list[Tool]:
        """Read every tool folder; unreadable ones are logged and skipped, tampered ones marked broken."""
        self.directory.mkdir(parents=True, exist_ok=True)
        loaded = []
        for folder in sorted(p for p in self.directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
            self._remove_stale_staging(folder)
            try:
                loaded.append(self._read(folder))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("tool folder %s is unreadable (%s); skipped", folder.name, exc)
        with self._lock:
            for tool in loaded:
                self._tools[tool.name] = tool
        return loaded

    @staticmethod
    def _remove_stale_staging(folder: Path) -> None:
        """Staging folders and temp files a crashed save left behind (old enough not to be in use)."""
        now = time.time()
        for leftover in folder.glob(".*"):
            try:
                if now - leftover.stat().st_mtime > _STALE_STAGING_S:
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            except OSError:
                continue

    # --- writing -----------------------------------------------------------------------------------
    def save(self, tool: Tool) -> Path:
        """Store `tool` as the next version of its name and make it current; returns its folder.

        The caller saves only a tool whose tests passed: until this returns, the previous version
        stays current (on disk and for get()), and a crash in between leaves it in place.
        """
        with self._lock:
            folder = self.directory / tool.name
            folder.mkdir(parents=True, exist_ok=True)
            current = self._tools.get(tool.name)
            on_disk = self._disk_version(folder)
            tool.version = max(current.version if current else 0, on_disk) + 1
            tool.source_hash = source_hash(tool.source, tool.tests)
            staging = folder / f".staging-v{tool.version}-{os.getpid()}-{time.time_ns()}"
            staging.mkdir()
            try:
                _write_durable(staging / SOURCE, tool.source)
                _write_durable(staging / TESTS, tool.tests)
                sync_folder(staging)
                target = folder / f"v{tool.version}"
                if target.exists():  # files of a version whose manifest never got written (a crash)
                    shutil.rmtree(target)
                staging.rename(target)
                sync_folder(folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            write_atomic(folder / MANIFEST, json.dumps(tool.manifest(), indent=2))  # the switch
            self._tools[tool.name] = tool
            self._remove_old_versions(folder, tool.version)
        log.info("tool %s saved as version %d", tool.name, tool.version)
        return folder

    @staticmethod
    def _disk_version(folder: Path) -> int:
        """The highest version present on disk (a manifest may be missing after a crash)."""
        versions = [int(p.name[1:]) for p in folder.glob("v*") if p.is_dir() and p.name[1:].isdigit()]
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            versions.append(int(manifest.get("version", 1)))
        except (OSError, ValueError, TypeError):
            pass
        return max(versions, default=0)

    @staticmethod
    def _remove_old_versions(folder: Path, keep: int) -> None:
        """Files of superseded versions (and of the pre-version layout) once the manifest points past them."""
        for old in folder.glob("v*"):
            if old.is_dir() and old.name[1:].isdigit() and int(old.name[1:]) != keep:
                shutil.rmtree(old, ignore_errors=True)
        for legacy in (SOURCE, TESTS):
            (folder / legacy).unlink(missing_ok=True)

    def set_status(self, name: str, status: str, validation: dict[str, Any]) -> Tool:
        """Record a status; only a verdict (ok/broken) is written to the manifest, never 'validating'."""
        with self._lock:
            tool = self._tools[name]
            tool.status, tool.validation = status, validation
            folder = self.directory / name
            if status != VALIDATING and (folder / MANIFEST).is_file():
                write_atomic(folder / MANIFEST, json.dumps(tool.manifest(), indent=2))
            return tool

    # --- queries -----------------------------------------------------------------------------------
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
        """The tool's folder (manifest.json)."""
        return self.directory / name

    def files_of(self, name: str) -> Path:
        """Where the current version's tool.py and test_tool.py are."""
        tool = self.get(name)
        if tool is None:
            raise KeyError(name)
        folder = self.path_of(name)
        versioned = folder / f"v{tool.version}"
        return versioned if versioned.is_dir() else folder
