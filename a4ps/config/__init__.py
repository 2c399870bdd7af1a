"""Codex and settings: typed, validated configuration (organ 1)."""

from a4ps.config.loader import ConfigError, load_codex, load_settings, project_root
from a4ps.config.schema import Codex, Persona, Settings

__all__ = ["ConfigError", "Codex", "Persona", "Settings", "load_codex", "load_settings", "project_root"]
