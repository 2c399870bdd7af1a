"""Filling the codex's prompt templates ({name} fields, {{ }} for literal braces), and numbers as text."""

from __future__ import annotations

import math
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


def shown(value: float) -> str:
    """A number as a person writes it: 1234567 not 1.23457e+06, 2.5 not 2.500000."""
    if not math.isfinite(value):
        return f"{value:g}"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) >= 1e-4 else f"{value:g}"
