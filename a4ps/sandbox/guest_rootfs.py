"""The minimal read-only root filesystem the runsc and bwrap guests see, and the docker image's base.

Built on first use from the skeleton in the project's sandbox/rootfs/ (users, hosts) plus empty
mount points and the merged-/usr symlinks; the host's /usr is bind-mounted read-only over it at run
time (the docker image copies the parts of /usr the guest needs into it instead: guest_image).
Cached under the work dir by content hash, so an edited skeleton yields a fresh rootfs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

_LAYOUT_VERSION = "1"
MOUNT_POINTS = ("usr", "tmp", "proc", "dev", "sandbox")
USR_SYMLINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64", "lib32": "usr/lib32"}


def default_assets_dir() -> Path:
    """The project's sandbox/ folder (the rootfs skeleton)."""
    return Path(__file__).resolve().parents[2] / "sandbox"


def usr_symlinks() -> dict[str, str]:
    """The /bin, /lib... links that exist on this host's merged /usr."""
    return {name: target for name, target in USR_SYMLINKS.items() if Path("/", target).is_dir()}


class GuestRootfs:
    """Prepares (once, thread- and process-safely) and locates the cached rootfs."""

    def __init__(self, assets_dir: Path, cache_dir: Path) -> None:
        self._skeleton = assets_dir / "rootfs"
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._path: Path | None = None

    def _digest(self) -> str:
        sha = hashlib.sha256(_LAYOUT_VERSION.encode())
        for path in sorted(self._skeleton.rglob("*")):
            relative = path.relative_to(self._skeleton).as_posix()
            sha.update(relative.encode() + b"\0")
            if path.is_file():
                sha.update(path.read_bytes() + b"\0")
        for name, target in sorted(usr_symlinks().items()):
            sha.update(f"{name}->{target}\0".encode())
        return sha.hexdigest()[:16]

    def ensure(self) -> Path:
        """Path of the prepared rootfs; builds it when missing."""
        with self._lock:
            if self._path is not None and self._path.is_dir():
                return self._path
            if not (self._skeleton / "etc").is_dir():
                raise FileNotFoundError(f"rootfs skeleton missing: {self._skeleton / 'etc'}")
            target = self._cache_dir / f"rootfs-{self._digest()}"
            if not target.is_dir():
                self._build(target)
            self._path = target
            return target

    def _build(self, target: Path) -> None:
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        building = self._cache_dir / f".{target.name}.{os.getpid()}.{threading.get_ident()}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(mode=0o755)
        try:
            shutil.copytree(self._skeleton, building, dirs_exist_ok=True)
            for name in MOUNT_POINTS:
                (building / name).mkdir(mode=0o755, exist_ok=True)
            for name, link in usr_symlinks().items():
                os.symlink(link, building / name)
            for path in [building, *building.rglob("*")]:
                if path.is_symlink():
                    continue
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            try:
                os.rename(building, target)
            except OSError:
                if not target.is_dir():  # lost a race with another process: theirs is identical
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
