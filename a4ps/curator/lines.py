"""JSON lines that a crash cannot tear: each record is one whole line, appended and fsynced.

Why: golden datasets and the judgement journal only grow, and rewriting them whole on every append
would cost O(size). An append can still be cut by a kill or a power loss, leaving a last line without
its newline. So the reader skips and reports such a torn tail instead of tripping on it, and the next
append first cuts it off (it was never acknowledged: whatever wrote it had not returned). Removing
records rewrites the file atomically (a4ps/atomicfile.py).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a4ps.atomicfile import sync_folder, write_atomic, write_synced

log = logging.getLogger(__name__)

_TAIL_CHUNK = 65536


def encode(record: dict[str, Any]) -> bytes:
    """One line: ASCII-escaped JSON (no raw newline or odd code point can split it) and '\\n'."""
    return json.dumps(record, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode("ascii") + b"\n"


@dataclass
class LinesRead:
    """What a file held: its records, a torn last line (skipped), and other unreadable lines (skipped)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    torn_tail: bool = False
    bad_lines: int = 0


def read_lines(path: Path) -> LinesRead:
    """Every whole, valid record of `path` (absent: none); damage is skipped and reported, never raised."""
    out = LinesRead()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return out
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # no newline after it: an append that was cut short
        out.torn_tail = True
        log.warning("%s: a torn last line (an interrupted append) was skipped", path)
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if isinstance(record, dict):
            out.records.append(record)
        elif line.strip():
            out.bad_lines += 1
            log.warning("%s: line %d is not a JSON object; skipped", path, number)
    return out


def _cut_torn_tail(fd: int, size: int) -> None:
    """Truncate after the last newline, if the file does not end with one."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            os.ftruncate(fd, start + at + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Append whole lines durably (fsync before returning); a torn tail left by a crash goes first."""
    if not records:
        return
    data = b"".join(encode(r) for r in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        _cut_torn_tail(fd, os.fstat(fd).st_size)
        write_synced(fd, data)
    finally:
        os.close(fd)
    if created:
        sync_folder(path.parent)


def rewrite_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace the file with exactly these records (atomic: readers see the old or the new file)."""
    write_atomic(path, b"".join(encode(r) for r in records))
