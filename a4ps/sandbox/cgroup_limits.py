"""Per-run cgroups that cap memory (without swap), CPU time and process count.

Works on cgroup v2 (a writable cgroup whose subtree has memory, cpu and pids enabled) and on the
v1/hybrid layout (separate memory, cpu and pids hierarchies). The cgroup is also how a run's host
processes are found and killed, and how an OOM kill is told apart from other deaths.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_V2_CONTROLLERS = ("memory", "cpu", "pids")
_V1_REQUIRED = ("memory", "cpu")
_V1_OPTIONAL = ("pids",)
_CPU_PERIOD_US = 100_000
_TEARDOWN_S = 5.0


@dataclass(frozen=True)
class CgroupLimits:
    """Resource caps for one run."""

    memory_bytes: int
    cpu_quota: float  # in CPUs, e.g. 0.5
    pids_max: int


@dataclass
class _Mount:
    fstype: str
    mountpoint: Path
    root: str
    options: set[str]


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 4 <= len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _cgroup_mounts() -> list[_Mount]:
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            mounts.append(
                _Mount(tail[0], Path(_unescape(fields[4])), _unescape(fields[3]), set(tail[2].split(",")))
            )
    return mounts


def _own_cgroups() -> dict[str, str]:
    """Controller name (or '' for v2) -> this process's cgroup path."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) != 3:
                continue
            _, controllers, path = parts
            if controllers == "":
                own[""] = path
            for name in controllers.split(","):
                if name:
                    own[name] = path
    return own


def _fs_path(mount: _Mount, cgroup_path: str) -> Path:
    """Where a cgroup path (as /proc/self/cgroup names it) lies under a mount."""
    root = mount.root.rstrip("/")
    relative = cgroup_path[len(root):] if root and cgroup_path.startswith(root + "/") else cgroup_path
    if cgroup_path == root:
        relative = ""
    return mount.mountpoint / relative.lstrip("/")


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _read_counter(path: Path, key: str) -> int:
    try:
        text = path.read_text(encoding="ascii")
    except OSError:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value.strip() or 0)
    return 0


def _cgroup_tree(directory: Path) -> list[Path]:
    """A cgroup dir and its descendants, deepest first; tolerates dirs vanishing while walking."""
    found: list[Path] = []
    for root, dirs, _ in os.walk(directory):
        found += [Path(root, d) for d in dirs]
    found.sort(key=lambda p: len(p.parts), reverse=True)
    return [*found, directory] if directory.is_dir() else found


def _procs_under(directory: Path) -> set[int]:
    pids: set[int] = set()
    for group in _cgroup_tree(directory):
        try:
            pids.update(int(pid) for pid in (group / "cgroup.procs").read_text(encoding="ascii").split())
        except (OSError, ValueError):
            continue
    return pids


def _rmdir_tree(directory: Path) -> bool:
    """Remove a cgroup and its children bottom-up; False while some are still busy."""
    done = True
    for path in _cgroup_tree(directory):
        try:
            path.rmdir()
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                done = False
            else:
                raise
    return done


@dataclass
class RunCgroup:
    """The cgroup(s) of one run: where to join, how to read OOM kills, how to kill and remove it."""

    version: int
    name: str
    dirs: dict[str, Path]  # controller ('' for v2) -> directory created and limited by us
    sweep_dirs: list[Path] = field(default_factory=list)  # same-named dirs a runtime may create
    runtime_path: str = ""  # the cgroupsPath to hand an OCI runtime

    @property
    def procs_files(self) -> list[Path]:
        """Write a pid into each of these to place it in the run's cgroup(s)."""
        return [directory / "cgroup.procs" for directory in self.dirs.values()]

    def oom_kills(self) -> int:
        """How many processes of this run the kernel OOM-killed."""
        if self.version == 2:
            return _read_counter(self.dirs[""] / "memory.events", "oom_kill")
        return _read_counter(self.dirs["memory"] / "memory.oom_control", "oom_kill")

    def pids(self) -> set[int]:
        """Host pids still inside the run's cgroup(s)."""
        pids: set[int] = set()
        for directory in [*self.dirs.values(), *self.sweep_dirs]:
            pids |= _procs_under(directory)
        return pids

    def kill_all(self, deadline_s: float = _TEARDOWN_S) -> bool:
        """SIGKILL every process of the run until none is left; True when the cgroup is empty."""
        if self.version == 2:
            kill_file = self.dirs[""] / "cgroup.kill"
            if kill_file.exists():
                try:
                    _write(kill_file, "1")
                except OSError:
                    pass
        end = time.monotonic() + deadline_s
        while True:
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if time.monotonic() > end:
                return False
            time.sleep(0.01)

    def remove(self, deadline_s: float = _TEARDOWN_S) -> None:
        """Kill what is left and delete every directory of this run (ours and the runtime's)."""
        emptied = self.kill_all(deadline_s)
        end = time.monotonic() + deadline_s
        remaining = [*self.dirs.values(), *self.sweep_dirs]
        while remaining:
            remaining = [d for d in remaining if not _rmdir_tree(d)]
            if not remaining:
                return
            if time.monotonic() > end:
                raise OSError(errno.EBUSY, f"cgroup of run {self.name} still busy (emptied={emptied})", str(remaining[0]))
            self.kill_all(0.5)
            time.sleep(0.01)


class CgroupManager:
    """Knows where this process may create per-run cgroups, and creates them."""

    def __init__(self, version: int, bases: dict[str, Path], all_v1_bases: list[Path], v2_mountpoint: Path | None) -> None:
        self.version = version
        self._bases = bases
        self._all_v1_bases = all_v1_bases
        self._v2_mountpoint = v2_mountpoint

    @classmethod
    def detect(cls) -> tuple[CgroupManager | None, str]:
        """A manager that proved it can create limited cgroups, or None and the reason it cannot."""
        try:
            mounts, own = _cgroup_mounts(), _own_cgroups()
        except OSError as exc:
            return None, f"cannot read cgroup layout: {exc}"
        reasons = []
        manager, reason = cls._detect_v2(mounts, own)
        if manager is None:
            reasons.append(reason)
            manager, reason = cls._detect_v1(mounts, own)
        if manager is None:
            reasons.append(reason)
            return None, "; ".join(reasons)
        try:
            probe = manager.create(f"a4ps-probe-{os.getpid()}-{time.monotonic_ns()}", CgroupLimits(64 << 20, 0.5, 16))
            probe.remove()
        except OSError as exc:
            return None, f"cgroup v{manager.version} not writable: {exc}"
        return manager, reason

    @classmethod
    def _detect_v2(cls, mounts: list[_Mount], own: dict[str, str]) -> tuple[CgroupManager | None, str]:
        mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
        if mount is None or "" not in own:
            return None, "no cgroup v2 mount"
        own_dir = _fs_path(mount, own[""])
        candidates = [own_dir] if own_dir == mount.mountpoint else [own_dir.parent] if own_dir.parent.is_relative_to(mount.mountpoint) else []
        for base in candidates:
            try:
                enabled = set((base / "cgroup.subtree_control").read_text(encoding="ascii").split())
                available = set((base / "cgroup.controllers").read_text(encoding="ascii").split())
            except OSError:
                continue
            missing = set(_V2_CONTROLLERS) - enabled
            if missing and base == mount.mountpoint and missing <= available:
                try:
                    _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))
                    missing = set()
                except OSError:
                    pass
            if not missing and os.access(base, os.W_OK):
                return cls(2, {"": base}, [], mount.mountpoint), "cgroup v2"
        return None, f"cgroup v2 at {mount.mountpoint}: no writable cgroup with {'+'.join(_V2_CONTROLLERS)} delegated"

    @classmethod
    def _detect_v1(cls, mounts: list[_Mount], own: dict[str, str]) -> tuple[CgroupManager | None, str]:
        bases: dict[str, Path] = {}
        all_bases: list[Path] = []
        for mount in mounts:
            if mount.fstype != "cgroup":
                continue
            for name in (o for o in mount.options if o in own):
                path = own[name]
                base = _fs_path(mount, path)
                all_bases.append(base)
                if name in (*_V1_REQUIRED, *_V1_OPTIONAL) and name not in bases:
                    bases[name] = base
        missing = [c for c in _V1_REQUIRED if c not in bases]
        if missing:
            return None, f"cgroup v1: no {'/'.join(missing)} hierarchy"
        unwritable = [str(b) for b in bases.values() if not os.access(b, os.W_OK)]
        if unwritable:
            return None, f"cgroup v1: not writable: {', '.join(unwritable)}"
        without = [c for c in _V1_OPTIONAL if c not in bases]
        note = f" (without {'/'.join(without)})" if without else ""
        return cls(1, bases, sorted(set(all_bases)), None), f"cgroup v1{note}"

    @property
    def controllers(self) -> list[str]:
        """Controllers a run's cgroup will be limited by."""
        return list(_V2_CONTROLLERS) if self.version == 2 else sorted(self._bases)

    def handle(self, name: str) -> RunCgroup:
        """The run cgroup called `name` (existing or not): used to create it, or to reap a stale one."""
        if self.version == 2:
            directory = self._bases[""] / name
            return RunCgroup(2, name, {"": directory}, [], "/" + str(directory.relative_to(self._v2_mountpoint)))
        dirs = {controller: base / name for controller, base in self._bases.items()}
        sweep = [base / name for base in self._all_v1_bases if base / name not in dirs.values()]
        return RunCgroup(1, name, dirs, sweep, name)

    def create(self, name: str, limits: CgroupLimits) -> RunCgroup:
        """Create the run's cgroup(s) with limits applied; removes them again if any write fails."""
        run = self.handle(name)
        try:
            for directory in run.dirs.values():
                directory.mkdir()
            self._apply(run, limits)
        except OSError:
            run.remove(1.0)
            raise
        return run

    def _apply(self, run: RunCgroup, limits: CgroupLimits) -> None:
        quota_us = max(1000, int(limits.cpu_quota * _CPU_PERIOD_US))
        if run.version == 2:
            directory = run.dirs[""]
            _write(directory / "memory.max", str(limits.memory_bytes))
            if (directory / "memory.swap.max").exists():
                _write(directory / "memory.swap.max", "0")
            _write(directory / "cpu.max", f"{quota_us} {_CPU_PERIOD_US}")
            _write(directory / "pids.max", str(limits.pids_max))
            return
        memory = run.dirs["memory"]
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        memsw = memory / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            _write(memsw, str(limits.memory_bytes))
        try:
            _write(memory / "memory.swappiness", "0")
        except OSError:
            pass
        cpu = run.dirs["cpu"]
        _write(cpu / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(quota_us))
        if "pids" in run.dirs:
            _write(run.dirs["pids"] / "pids.max", str(limits.pids_max))
