"""The living image: the whole live state as one dill file, atomic, signed, with checkpoints.

Loading dill runs code, so an image is only unpickled after its HMAC (keyed by a secret created on
first run, mode 0600) verifies. A bad newest checkpoint falls back to the previous good one.
Checkpoints are numbered by a counter, never the clock; temp files a crash left are removed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import struct
import threading
import time
from pathlib import Path
from typing import Any

import dill

from a4ps.privatefile import STALE_TEMP_S, read_private, write_private

log = logging.getLogger(__name__)

MAGIC = b"A4PSIMG1"
_HEADER = struct.Struct(">8s32sQ")  # magic, HMAC-SHA256, payload length


class ImageError(Exception):
    """An image file is unsigned, tampered, truncated or unreadable."""


class ImageSaveError(OSError):
    """The image could not be written (disk full, folder gone, state not picklable); says where and why."""


def load_or_create_key(path: Path) -> bytes:
    """The signing key; created atomically (never empty or partial) with mode 0600 on first run.

    An empty key file, left by a crash of versions that created it in place, signed nothing: it
    is replaced rather than blocking every later start."""
    key = read_private(path)
    if key is not None and len(key) == 32:
        return key
    if key:
        raise ImageError(f"{path}: signing key is {len(key)} bytes, expected 32")
    if key is not None:
        log.warning("image key %s is empty (a crash while it was created); making a new one", path)
    key = write_private(path, secrets.token_bytes(32), replace=key is not None)
    log.info("image signing key ready: %s", path)
    return key


def _number(path: Path) -> int | None:
    """The counter in `image-<number>.dill` (older images used the clock in ns: still a number)."""
    digits = path.name[len("image-"):-len(".dill")]
    return int(digits) if digits.isdigit() else None


class LivingImage:
    """Saves and restores a state dict under `directory` as signed checkpoints."""

    def __init__(self, directory: Path, key_path: Path, keep: int = 5):
        self.directory = directory
        self.keep = keep
        self._key_path = key_path
        self._key: bytes | None = None
        self._lock = threading.Lock()
        self.last_path: Path | None = None
        self.last_saved_at: float | None = None

    def _signing_key(self) -> bytes:
        if self._key is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._key = load_or_create_key(self._key_path)
        return self._key

    def checkpoints(self) -> list[Path]:
        """Checkpoint files, newest first: by their number, a counter (a clock can go backwards)."""
        if not self.directory.is_dir():
            return []
        numbered = [(_number(path), path) for path in self.directory.glob("image-*.dill")]
        return [path for number, path in sorted(numbered, reverse=True) if number is not None]

    def remove_stale_temps(self, older_than_s: float = STALE_TEMP_S) -> int:
        """Delete half-written checkpoints a crash left behind; returns how many."""
        removed, cutoff = 0, time.time() - older_than_s
        for temp in self.directory.glob(".image-*.tmp") if self.directory.is_dir() else ():
            try:
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("removed %d stale temp file(s) from %s", removed, self.directory)
        return removed

    def save(self, state: dict[str, Any]) -> Path:
        """Write a new checkpoint atomically (temp, fsync, rename) and prune old ones.

        Raises ImageSaveError, whatever went wrong, so callers handle one kind of failure."""
        try:
            return self._save(state)
        except ImageSaveError:
            raise
        except Exception as exc:  # OSError, a dill PicklingError, a bad key file...
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            where = getattr(exc, "filename", None) or self.directory
            raise ImageSaveError(f"the living image cannot be saved ({where}: {detail})") from exc

    def _save(self, state: dict[str, Any]) -> Path:
        payload = dill.dumps(state)
        with self._lock:
            key = self._signing_key()
            mac = hmac.new(key, MAGIC + payload, hashlib.sha256).digest()
            self.remove_stale_temps()
            newest = self.checkpoints()[:1]
            number = (_number(newest[0]) if newest else 0) + 1
            final = self.directory / f"image-{number:020d}.dill"
            tmp = self.directory / f".image-{number:020d}.tmp"
            try:
                with open(tmp, "wb") as handle:
                    handle.write(_HEADER.pack(MAGIC, mac, len(payload)))
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            for old in self.checkpoints()[self.keep:]:
                old.unlink(missing_ok=True)
            self.last_path, self.last_saved_at = final, time.time()
            return final

    def read(self, path: Path) -> dict[str, Any]:
        """Verify and unpickle one checkpoint; ImageError says why it is refused."""
        key = self._signing_key()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{path.name}: unreadable ({exc.strerror})") from None
        if len(raw) < _HEADER.size:
            raise ImageError(f"{path.name}: truncated header")
        magic, mac, length = _HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise ImageError(f"{path.name}: not a signed BAT OS image")
        payload = raw[_HEADER.size:]
        if len(payload) != length:
            raise ImageError(f"{path.name}: truncated ({len(payload)} of {length} payload bytes)")
        expected = hmac.new(key, MAGIC + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise ImageError(f"{path.name}: signature mismatch (tampered or signed with another key)")
        try:
            state = dill.loads(payload)
        except Exception as exc:  # signed but unloadable (e.g. a class that no longer exists)
            raise ImageError(f"{path.name}: cannot be unpickled ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, dict):
            raise ImageError(f"{path.name}: payload is not a state map")
        return state

    def load_latest(self) -> tuple[dict[str, Any] | None, Path | None]:
        """The newest checkpoint that verifies; (None, None) means a fresh start."""
        with self._lock:
            self.remove_stale_temps()
            for path in self.checkpoints():
                try:
                    state = self.read(path)
                except ImageError as exc:
                    log.warning("refused living image %s", exc)
                    continue
                log.info("living image restored from %s", path.name)
                self.last_path = path
                return state, path
        log.info("no valid living image in %s: fresh start", self.directory)
        return None, None
