"""The files a run hands to the guest, and the launcher that unpacks them inside the sandbox.

Every backend mounts one staged directory read-only at GUEST_INPUT_DIR and starts GUEST_ARGV. The
launcher copies the inputs into the size-capped tmpfs scratch (the guest's cwd), points stdin at the
staged stdin file and runs main.py as __main__. Staging is the same for every backend, so a guest
sees the same world whichever one runs it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

GUEST_INPUT_DIR = "/sandbox"
GUEST_SCRATCH_DIR = "/tmp"
GUEST_PYTHON = "/usr/bin/python3"
GUEST_ENV = {"PATH": "/usr/bin:/bin", "HOME": GUEST_SCRATCH_DIR, "LANG": "C.UTF-8"}

MAIN_NAME = "main.py"
FILES_DIR = "files"
STDIN_NAME = "stdin"

# Runs as `python3 -I -S -c LAUNCHER`: isolated mode ignores PYTHON* variables and user site dirs;
# no site import and only modules the interpreter has loaded anyway (os aside), because every import
# costs milliseconds per run (more under gVisor, where each file open goes through the gofer).
_LAUNCHER = f"""
import builtins, os, sys, _sitebuiltins
builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
os.chdir({GUEST_SCRATCH_DIR!r})
def _copy(src, dst):
    with open(src, "rb") as i, open(dst, "wb") as o:
        o.write(i.read())
_root = {GUEST_INPUT_DIR + "/" + FILES_DIR!r}
for _dir, _subdirs, _names in os.walk(_root):
    _rel = os.path.relpath(_dir, _root)
    if _rel != ".":
        os.mkdir(_rel)
    for _name in _names:
        _copy(_dir + "/" + _name, _name if _rel == "." else _rel + "/" + _name)
_copy({GUEST_INPUT_DIR + "/" + MAIN_NAME!r}, {MAIN_NAME!r})
_fd = os.open({GUEST_INPUT_DIR + "/" + STDIN_NAME!r}, os.O_RDONLY)
os.dup2(_fd, 0)
os.close(_fd)
sys.argv = [{MAIN_NAME!r}]
sys.path.insert(0, {GUEST_SCRATCH_DIR!r})
_main = type(sys)("__main__")
_main.__file__ = {GUEST_SCRATCH_DIR + "/" + MAIN_NAME!r}
_main.__builtins__ = builtins
sys.modules["__main__"] = _main
with open({MAIN_NAME!r}, "rb") as _src:
    _code = compile(_src.read(), _main.__file__, "exec")
exec(_code, _main.__dict__)
"""

GUEST_ARGV = [GUEST_PYTHON, "-I", "-S", "-c", _LAUNCHER]


def _safe_relative(name: str) -> PurePosixPath:
    """Reject names that could land outside the scratch dir or shadow the entry point."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"file name {name!r} must be a relative path without '.' or '..' parts")
    if path == PurePosixPath(MAIN_NAME):
        raise ValueError(f"file name {name!r} collides with the entry point")
    return path


def stage_inputs(stage_dir: Path, source: str, files: dict[str, str] | None, stdin: bytes | None) -> None:
    """Write source, extra files and stdin into stage_dir, readable (not writable) by any uid."""
    relative = {name: _safe_relative(name) for name in (files or {})}
    stage_dir.mkdir(mode=0o755)
    os.chmod(stage_dir, 0o755)
    (stage_dir / MAIN_NAME).write_text(source, encoding="utf-8")
    (stage_dir / STDIN_NAME).write_bytes(stdin or b"")
    files_root = stage_dir / FILES_DIR
    files_root.mkdir(mode=0o755)
    os.chmod(files_root, 0o755)
    for name, content in (files or {}).items():
        target = files_root / relative[name]
        for parent in reversed(target.relative_to(files_root).parents):
            directory = files_root / parent
            if not directory.exists():
                directory.mkdir(mode=0o755)
                os.chmod(directory, 0o755)
        target.write_text(content, encoding="utf-8")
    for path in stage_dir.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o644)
