"""Where the user left each morph: fractions of the canvas, kept in <data_dir>/ui/morph_positions.json."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "morph_positions.json"


class MorphPositions:
    """A small JSON map `key -> [fx, fy]` (each in 0..1); unreadable files are ignored, not fatal."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._positions: dict[str, tuple[float, float]] = {}
        self._load()

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> "MorphPositions":
        return cls(Path(data_dir) / "ui" / FILE_NAME)

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable morph positions %s: %s", self.path, exc)
            return
        if not isinstance(raw, dict):
            log.warning("ignoring morph positions %s: not a JSON object", self.path)
            return
        for key, value in raw.items():
            frac = _as_fraction(value)
            if frac is not None:
                self._positions[str(key)] = frac

    def get(self, key: str) -> tuple[float, float] | None:
        return self._positions.get(key)

    def set(self, key: str, frac: tuple[float, float]) -> None:
        self._positions[key] = (min(1.0, max(0.0, float(frac[0]))), min(1.0, max(0.0, float(frac[1]))))

    def save(self) -> bool:
        """Write atomically (temp file, fsync, rename); False (and a log line) if the disk refuses."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".positions-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump({k: [round(x, 5), round(y, 5)] for k, (x, y) in sorted(self._positions.items())},
                              out, indent=1)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("could not save morph positions to %s: %s", self.path, exc)
            return False
        return True


def _as_fraction(value: object) -> tuple[float, float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    x, y = float(value[0]), float(value[1])
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        return None
    return x, y
