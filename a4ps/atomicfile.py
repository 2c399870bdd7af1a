"""Files replaced whole: readers, and a crash (SIGKILL, power loss), see the old or the new content.

Why: the autonomy choice, a pending codex proposal and the codex itself must survive a kill at any
moment without ever being half-written (write a temp file beside it, fsync, rename, fsync the folder).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


def write_synced(fd: int, data: bytes) -> None:
    """Write all of `data` to an open descriptor and fsync it (os.write may write only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so a file just created, renamed or linked in it survives a power loss."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` durably; the folder is created if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True).encode("utf-8"))


def read_json(path: Path) -> Any | None:
    """The decoded file, or None when it is absent; a damaged file raises ValueError naming it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from None
