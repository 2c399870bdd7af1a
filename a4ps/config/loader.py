"""Load and validate the TOML files; any problem becomes one ConfigError line naming file and key."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from a4ps.config.schema import Codex, Settings

T = TypeVar("T", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid (message is one line)."""


def project_root() -> Path:
    """The folder holding config/, a4ps/ and data/."""
    return Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    """Where settings.toml and codex.toml live (env A4PS_CONFIG_DIR overrides)."""
    override = os.environ.get("A4PS_CONFIG_DIR")
    return Path(override).resolve() if override else project_root() / "config"


def _load(path: Path, model: type[T]) -> T:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        kind = err["type"]
        if kind == "missing":
            detail = "missing key"
        elif kind == "extra_forbidden":
            detail = "unknown key"
        else:
            detail = f"{err['msg']} (got {err.get('input')!r})"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}: key '{key}': {detail}{more}") from None


def _from_root(value: str) -> Path:
    """A path from settings: `~` expanded, relative ones taken from the project root."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_root() / path


def load_settings(path: Path | None = None) -> Settings:
    """settings.toml, validated, with env overrides (A4PS_DATA_DIR, A4PS_PUB_ADDR, A4PS_REP_ADDR)."""
    settings = _load(path or config_dir() / "settings.toml", Settings)
    data_dir = os.environ.get("A4PS_DATA_DIR") or settings.data_dir
    resolved = Path(data_dir)
    if not resolved.is_absolute():
        resolved = project_root() / resolved
    settings.data_dir = str(resolved)
    embedded = settings.models.embedded
    embedded.models_dir = str(_from_root(embedded.models_dir) if embedded.models_dir else resolved / "models")
    embedded.model_path = str(_from_root(embedded.model_path)) if embedded.model_path else ""
    settings.zmq.pub_addr = os.environ.get("A4PS_PUB_ADDR") or settings.zmq.pub_addr
    settings.zmq.rep_addr = os.environ.get("A4PS_REP_ADDR") or settings.zmq.rep_addr
    return settings


def load_codex(path: Path | None = None) -> Codex:
    """codex.toml, validated."""
    return _load(path or config_dir() / "codex.toml", Codex)
