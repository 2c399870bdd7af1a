"""Filling the codex's prompt templates ({name} fields, {{ }} for literal braces)."""

from __future__ import annotations

from typing import Any


class _Fill(dict):
    """An unknown {name} stays as written instead of failing: a codex edit cannot crash a task."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, **values: Any) -> str:
    try:
        return template.format_map(_Fill(values))
    except (ValueError, IndexError):  # a stray single brace: the template is used as written
        return template
