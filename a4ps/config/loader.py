"""Load and validate the TOML files; any problem becomes one ConfigError line naming file and key."""

from __future__ import annotations

import ipaddress
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
    """settings.toml, validated, with env overrides (A4PS_DATA_DIR, A4PS_PUB_ADDR, A4PS_REP_ADDR);
    a bind address that could serve other machines is an error unless zmq.allow_remote is set."""
    settings = _load(path or config_dir() / "settings.toml", Settings)
    data_dir = os.environ.get("A4PS_DATA_DIR") or settings.data_dir
    resolved = Path(data_dir)
    if not resolved.is_absolute():
        resolved = project_root() / resolved
    settings.data_dir = str(resolved)
    embedded = settings.models.embedded
    embedded.models_dir = str(_from_root(embedded.models_dir) if embedded.models_dir else resolved / "models")
    embedded.model_path = str(_from_root(embedded.model_path)) if embedded.model_path else ""
    for key, env in (("pub_addr", "A4PS_PUB_ADDR"), ("rep_addr", "A4PS_REP_ADDR")):
        source = f"{path or config_dir() / 'settings.toml'}: key 'zmq.{key}'"
        if os.environ.get(env):
            setattr(settings.zmq, key, os.environ[env])
            source = f"environment variable {env}"
        problem = None if settings.zmq.allow_remote else bind_address_problem(getattr(settings.zmq, key))
        if problem:
            raise ConfigError(f"{source}: {getattr(settings.zmq, key)!r} {problem}; only loopback or ipc:// "
                              f"addresses are served unless zmq.allow_remote = true")
    return settings


def bind_address_problem(address: str) -> str | None:
    """None when a ZeroMQ address stays on this machine (loopback tcp, ipc://, inproc://), else why not."""
    transport, sep, endpoint = address.partition("://")
    if not sep:
        return "is not a ZeroMQ address (transport://endpoint)"
    if transport in ("ipc", "inproc"):
        return None
    if transport != "tcp":
        return f"uses transport {transport!r}, which can reach other machines"
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return f"listens on {host!r}, which is not a loopback address"


def codex_path() -> Path:
    """The codex file in use (config/codex.toml, or the one under A4PS_CONFIG_DIR)."""
    return config_dir() / "codex.toml"


def load_codex(path: Path | None = None) -> Codex:
    """codex.toml, validated."""
    return _load(path or codex_path(), Codex)
