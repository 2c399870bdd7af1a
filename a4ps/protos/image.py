"""The living image: the whole live state as one dill file, atomic, signed, with checkpoints.

Loading dill runs code, so an image is only unpickled after its HMAC (keyed by a secret created on
first run, mode 0600) verifies. A bad newest checkpoint falls back to the previous good one.
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

log = logging.getLogger(__name__)

MAGIC = b"A4PSIMG1"
_HEADER = struct.Struct(">8s32sQ")  # magic, HMAC-SHA256, payload length


class ImageError(Exception):
    """An image file is unsigned, tampered, truncated or unreadable."""


class ImageSaveError(OSError):
    """The image could not be written (disk full, folder gone, state not picklable); says where and why."""


def load_or_create_key(path: Path) -> bytes:
    """The signing key; created atomically with mode 0600 on first run."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != 32:
            raise ImageError(f"{path}: signing key is {len(key)} bytes, expected 32") from None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("image key %s had loose permissions; set to 0600", path)
        return key
    key = secrets.token_bytes(32)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("created image signing key %s", path)
    return key


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
        """Checkpoint files, newest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("image-*.dill"), reverse=True)

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
            stamp = time.time_ns()
            final = self.directory / f"image-{stamp:020d}.dill"
            tmp = self.directory / f".image-{stamp:020d}.tmp"
            with open(tmp, "wb") as handle:
                handle.write(_HEADER.pack(MAGIC, mac, len(payload)))
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
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
