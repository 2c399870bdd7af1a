"""Small secret files (the image signing key, the control token), created atomically with mode 0600.

The content goes to a private temp file beside the target, is fsynced, then linked into place: a
crash never leaves an empty or partial secret (which would make every later start fail), and of
two processes creating the same file at once the first link wins and both use its content.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import time
from pathlib import Path

from a4ps.atomicfile import sync_folder, write_synced

log = logging.getLogger(__name__)

STALE_TEMP_S = 60.0  # a temp file older than this is from a process that died while writing


def _temp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def remove_stale_temps(path: Path, older_than_s: float = STALE_TEMP_S) -> int:
    """Delete temp files a crashed writer left beside `path`; returns how many were removed."""
    removed, cutoff = 0, time.time() - older_than_s
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    if removed:
        log.info("removed %d stale temp file(s) beside %s", removed, path)
    return removed


def write_private(path: Path, data: bytes, *, replace: bool = False) -> bytes:
    """Create `path` (0600) holding `data`; returns what the file holds afterwards.

    Without `replace`, an existing file is kept and its content returned (another process won)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    temp = _temp_for(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            write_synced(fd, data)
        finally:
            os.close(fd)
        if replace:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                return path.read_bytes()
            except OSError as exc:  # a file system without hard links: rename, never overwriting
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if path.exists():
                    return path.read_bytes()
                os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    sync_folder(path.parent)
    return data


def read_private(path: Path) -> bytes | None:
    """The content of an existing secret file (tightened to 0600 if it was looser); None if absent."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
        log.warning("%s had loose permissions; set to 0600", path)
    return data
