"""The docker backend's image, made from this host's Python without any registry.

It holds the guest the runsc and bwrap backends show: their rootfs (guest_rootfs) plus, in place of
the host /usr they bind-mount, a copy of the guest interpreter, its standard library, the few tools
guest code may shell out to, and every shared library `ldd` lists for them. So all three backends
run the same Python. The tarball is loaded as a one-layer image (`docker import`: a few seconds,
~64 MB) with a label holding a digest of its inputs, so a changed host Python or rootfs skeleton
shows up as a stale image.

    python -m a4ps.sandbox.guest_image [--tag a4ps-sandbox:latest] [--output rootfs.tar]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a4ps.sandbox.backend_base import SANDBOX_GID, SANDBOX_UID, SYSTEM_PATH, find_binary
from a4ps.sandbox.guest_payload import GUEST_ENV, GUEST_PYTHON, GUEST_SCRATCH_DIR
from a4ps.sandbox.guest_rootfs import GuestRootfs, default_assets_dir

log = logging.getLogger(__name__)

_IMAGE_LAYOUT_VERSION = "1"
DIGEST_LABEL = "a4ps.sandbox.guest-digest"
# What guest code may shell out to (os.system needs sh; the rest are the usual first tries of
# hostile code, kept so the docker guest meets the same refusals as the others, not a missing file).
GUEST_TOOLS = ("sh", "echo", "cat", "ls", "env", "sleep", "mount", "curl")
# Loaded with dlopen, so absent from ldd's list: glibc needs libgcc_s for thread cancellation.
_DLOPENED = ("libgcc_s.so.1",)
# Build-time files of the stdlib (Makefile, static libpython): never needed by a running guest.
_SKIPPED_STDLIB_DIRS = re.compile(r"^config-\d+\.\d+")
_LDD_PATH = re.compile(r"(/\S+) \(0x[0-9a-f]+\)$")
_SUBPROCESS_TIMEOUT_S = 60


class GuestImageError(RuntimeError):
    """The host lacks what the image is made from (the guest Python, ldd), or ldd failed."""


@dataclass(frozen=True)
class GuestImageSpec:
    """What goes into the image: the prepared rootfs and the host paths copied over it."""

    rootfs: Path
    host_paths: tuple[str, ...]
    digest: str


def _run(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env={"PATH": SYSTEM_PATH},
                              timeout=_SUBPROCESS_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GuestImageError(f"{argv[0]} failed: {exc}") from exc
    if proc.returncode != 0 and not proc.stdout:
        raise GuestImageError(f"{' '.join(argv[:3])}... exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def _stdlib_files(python: str) -> list[str]:
    """Every file on the guest interpreter's own sys.path (run as the guest runs it: -I -S)."""
    paths = _run([python, "-I", "-S", "-c", "import sys; print('\\n'.join(sys.path))"]).split()
    files: list[str] = []
    for entry in paths:
        if os.path.isfile(entry):
            files.append(entry)
            continue
        for root, dirs, names in os.walk(entry):
            dirs[:] = sorted(d for d in dirs if not (root == entry and _SKIPPED_STDLIB_DIRS.match(d)))
            files += [os.path.join(root, name) for name in sorted(names)]
    return files


def _shared_libraries(binaries: list[str]) -> list[str]:
    """The shared libraries the dynamic loader would map for these ELF files, their closure included."""
    ldd = find_binary("ldd")
    if ldd is None:
        raise GuestImageError("ldd not found (Debian package libc-bin)")
    libraries = {match.group(1) for line in _run([ldd, *binaries]).splitlines()
                 if (match := _LDD_PATH.search(line.strip()))}
    if not libraries:
        raise GuestImageError(f"ldd listed no libraries for {binaries[0]}")
    lib_dirs = sorted({os.path.dirname(path) for path in libraries})
    for name in _DLOPENED:
        libraries.update(os.path.join(d, name) for d in lib_dirs if os.path.exists(os.path.join(d, name)))
    return sorted(libraries)


def _canonical(path: str) -> str:
    """The path with its directories resolved (merged /usr: /lib/x -> /usr/lib/x); a final symlink is kept."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _with_link_targets(paths: list[str]) -> list[str]:
    """Canonical paths plus, for each symlink among them, what it points to (transitively)."""
    seen: set[str] = set()
    pending = [_canonical(p) for p in paths]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        if os.path.islink(path):
            target = os.readlink(path)
            pending.append(_canonical(target if os.path.isabs(target) else os.path.join(os.path.dirname(path), target)))
    return sorted(p for p in seen if os.path.lexists(p))


def collect(assets_dir: Path, cache_dir: Path) -> GuestImageSpec:
    """Find what the image is made of on this host and digest it (names, sizes, mtimes, links)."""
    python = os.path.realpath(GUEST_PYTHON)
    if not _is_elf(python):
        raise GuestImageError(f"guest interpreter {GUEST_PYTHON} missing or not a binary")
    tools = [found for name in GUEST_TOOLS if (found := shutil.which(name, path=GUEST_ENV["PATH"]))]
    stdlib = _stdlib_files(python)
    binaries = [python, *(t for t in tools if _is_elf(os.path.realpath(t))), *(f for f in stdlib if f.endswith(".so") and _is_elf(f))]
    host_paths = _with_link_targets([GUEST_PYTHON, python, *tools, *stdlib, *_shared_libraries(binaries)])
    rootfs = GuestRootfs(assets_dir, cache_dir).ensure()
    sha = hashlib.sha256(f"{_IMAGE_LAYOUT_VERSION}\0{rootfs.name}\0".encode())
    for path in host_paths:
        st = os.lstat(path)
        link = os.readlink(path) if os.path.islink(path) else ""
        sha.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode:o}\0{link}\0".encode())
    return GuestImageSpec(rootfs=rootfs, host_paths=tuple(host_paths), digest=sha.hexdigest()[:16])


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_tar(spec: GuestImageSpec, out: Any) -> None:
    """Write the image's root filesystem as an uncompressed tar stream to the binary file `out`."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        added: set[str] = set()
        for entry in sorted(spec.rootfs.rglob("*")):
            arcname = entry.relative_to(spec.rootfs).as_posix()
            tar.add(entry, arcname=arcname, recursive=False, filter=_as_root)
            added.add(arcname)
        for path in spec.host_paths:
            arcname = path.lstrip("/")
            parents = list(Path(arcname).parents)[-2::-1]  # top-down, without "."
            for parent in (p.as_posix() for p in parents):
                if parent not in added:
                    tar.add("/" + parent, arcname=parent, recursive=False, filter=_as_root)
                    added.add(parent)
            if arcname not in added:
                tar.add(path, arcname=arcname, recursive=False, filter=_as_root)  # setuid bits kept
                added.add(arcname)


def image_changes(digest: str) -> list[str]:
    """The image config set at import (Dockerfile syntax): the guest's user, cwd, env and digest label."""
    env = " ".join(f"{key}={value}" for key, value in GUEST_ENV.items())
    return [
        f"ENV {env}",
        f"USER {SANDBOX_UID}:{SANDBOX_GID}",
        f"WORKDIR {GUEST_SCRATCH_DIR}",
        f"LABEL {DIGEST_LABEL}={digest}",
        f'CMD ["{GUEST_PYTHON}", "-I", "-S", "-c", "print(\'a4ps sandbox image\')"]',
    ]


def build_image(client: Any, tag: str, spec: GuestImageSpec, tmp_dir: Path | None = None) -> str:
    """Import the image into the engine behind a docker SDK client; returns its id."""
    started = time.monotonic()
    repository, colon, version = tag.rpartition(":")
    if not colon or "/" in version:  # no tag, or the colon belonged to a registry's port
        repository, version = tag, "latest"
    with tempfile.NamedTemporaryFile(prefix="a4ps-guest-", suffix=".tar", dir=tmp_dir) as handle:
        write_tar(spec, handle)
        handle.flush()
        size = handle.tell()
        handle.seek(0)
        reply = client.api.import_image(src=handle, repository=repository, tag=version,
                                        changes=image_changes(spec.digest))
    image = client.images.get(tag)  # raises ImageNotFound if the import silently failed
    if image.labels.get(DIGEST_LABEL) != spec.digest:
        raise GuestImageError(f"imported image {tag} lacks its digest label (engine said: {str(reply)[:300]})")
    log.info("built sandbox image %s (%s, %.0f MB, %d host files) in %.1f s",
             tag, image.short_id, size / 1e6, len(spec.host_paths), time.monotonic() - started)
    return image.id


def main(argv: list[str] | None = None) -> int:
    """CLI: build the image into the engine at DOCKER_HOST, or write its rootfs tarball."""
    from a4ps.config.loader import load_settings

    parser = argparse.ArgumentParser(prog="python -m a4ps.sandbox.guest_image", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default=None, help="image tag (default: sandbox.docker_image from the settings)")
    parser.add_argument("--output", default=None, help="write the rootfs tarball here ('-' for stdout) instead of importing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="a4ps-guest-image-") as cache:
        try:
            spec = collect(default_assets_dir(), Path(cache))
        except (GuestImageError, OSError) as exc:
            print(f"guest_image: {exc}", file=sys.stderr)
            return 1
        if args.output is not None:
            if args.output == "-":
                write_tar(spec, sys.stdout.buffer)
            else:
                with open(args.output, "wb") as out:
                    write_tar(spec, out)
            changes = " ".join(f"-c {shlex.quote(c)}" for c in image_changes(spec.digest))
            print(f"load it with: docker import {changes} FILE TAG", file=sys.stderr)
            return 0
        import docker

        tag = args.tag or load_settings().sandbox.docker_image
        try:
            client = docker.from_env(timeout=120)
            build_image(client, tag, spec)
        except (docker.errors.DockerException, GuestImageError, OSError) as exc:
            print(f"guest_image: building {tag} failed: {exc}", file=sys.stderr)
            return 1
        print(f"{tag} digest {spec.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
