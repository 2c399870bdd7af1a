"""Process-wide logging: one line per record to stderr and to <data_dir>/logs/<name>.log."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, data_dir: str | None = None, name: str = "a4ps") -> None:
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)
    if data_dir:
        logs = Path(data_dir) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(logs / f"{name}.log", maxBytes=5_000_000, backupCount=3)
        file_handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(file_handler)
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
