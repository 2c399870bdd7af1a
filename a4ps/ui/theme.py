"""Colours, fonts and sizes of the Entropic UI's dark theme."""

from __future__ import annotations

import zlib

RGBA = tuple[float, float, float, float]


def hex_rgba(code: str, alpha: float = 1.0) -> RGBA:
    """'5fa8e8' -> (r, g, b, a) in 0..1."""
    code = code.lstrip("#")
    return (int(code[0:2], 16) / 255, int(code[2:4], 16) / 255, int(code[4:6], 16) / 255, alpha)


WINDOW_SIZE = (1280, 800)

BACKGROUND = hex_rgba("0f1117")
PANEL = hex_rgba("171a22")
PANEL_RAISED = hex_rgba("1f2430")
PANEL_EDGE = hex_rgba("2b3140")
INPUT = hex_rgba("11141b")
TEXT = hex_rgba("e4e7ee")
MUTED = hex_rgba("8b93a7")
FAINT = hex_rgba("4a5162")
ACCENT = hex_rgba("4f8cff")
GOOD = hex_rgba("4cc38a")
WARN = hex_rgba("f0b541")
BAD = hex_rgba("ef5f67")
TOOL_HEX = "3fc1b0"
TOOL = hex_rgba(TOOL_HEX)

MUTED_HEX = "8b93a7"
GOOD_HEX = "4cc38a"
BAD_HEX = "ef5f67"
WARN_HEX = "f0b541"
HUNK_HEX = "6aa6ff"

MONO_FONT = "RobotoMono-Regular"
BOLD_FONT = "Roboto-Bold"

FONT_SMALL = 12
FONT_BODY = 14
FONT_TITLE = 17

PERSONA_HEX = {"ALFRED": "e2b65c", "BRICK": "5fa8e8", "ROBIN": "ee7fa6"}
_FALLBACK_HEX = ("9ad77f", "c49bf2", "f2a65a", "6fd3d3", "e58f6f")

STATUS_HEX = {"idle": "6b7386", "thinking": "f0b541", "speaking": "4cc38a"}
TASK_STATUS_HEX = {"queued": "8b93a7", "running": "4f8cff", "done": "4cc38a", "failed": "ef5f67",
                   "cancelled": "b0876a"}


def persona_hex(name: str) -> str:
    """A stable colour per persona: the three named ones are fixed, others hash into a palette."""
    if name in PERSONA_HEX:
        return PERSONA_HEX[name]
    return _FALLBACK_HEX[zlib.crc32(name.encode()) % len(_FALLBACK_HEX)]


def persona_rgba(name: str, alpha: float = 1.0) -> RGBA:
    return hex_rgba(persona_hex(name), alpha)


def status_hex(status: str) -> str:
    return STATUS_HEX.get(status, STATUS_HEX["idle"])


def task_status_hex(status: str) -> str:
    return TASK_STATUS_HEX.get(status, MUTED_HEX)
