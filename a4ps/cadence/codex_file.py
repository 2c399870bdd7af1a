"""The codex file in use: rewritten atomically with version + 1, each version archived with when and why.

Why: an approved amendment changes the file a person also edits by hand, so the change is made
where it is (the values that changed are replaced in the text, comments and layout kept) and the
result must parse back to exactly the amended codex, or the file is written whole from the data.
Every version replaced is kept under `<data_dir>/codex_history/` with a record of when, why and by
what (a proposal, a revert), so any version can be restored as a new one.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import toml

from a4ps.atomicfile import read_json, write_atomic, write_json
from a4ps.cadence.amendment import AmendmentError, guard_consent
from a4ps.config.schema import Codex

log = logging.getLogger(__name__)

_HEADER = re.compile(r"[ \t]*(\[\[?)[ \t]*([A-Za-z0-9_.-]+)[ \t]*\]\]?[ \t]*(#.*)?$")
_KEY = re.compile(r"[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*")


class CodexFileError(Exception):
    """The codex file cannot be read, parsed or written (the message says which and why)."""


# --- TOML text ---------------------------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if "\n" not in value:
            return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
        body = []
        for ch in value:
            if ch == "\\":
                body.append("\\\\")
            elif ch == '"':
                body.append('\\"')
            elif ch in "\n\t":
                body.append(ch)
            elif ord(ch) < 0x20 or ch == "\x7f":
                body.append(f"\\u{ord(ch):04x}")
            else:
                body.append(ch)
        return '"""\n' + "".join(body) + '"""'
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _value_end(text: str, i: int) -> int:
    """Where the TOML value starting at `i` ends (strings, numbers, booleans)."""
    for quote in ('"""', "'''"):
        if text.startswith(quote, i):
            j = i + 3
            while j < len(text):
                if quote == '"""' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(quote, j):
                    end = j + 3
                    while end < len(text) and text[end] == quote[0] and end - j < 5:
                        end += 1
                    return end
                j += 1
            raise CodexFileError("unterminated multi-line string")
    if text[i:i + 1] in ('"', "'"):
        quote, j = text[i], i + 1
        while j < len(text) and text[j] != "\n":
            if quote == '"' and text[j] == "\\":
                j += 2
                continue
            if text[j] == quote:
                return j + 1
            j += 1
        raise CodexFileError("unterminated string")
    if text[i:i + 1] in ("[", "{"):
        raise CodexFileError("arrays and inline tables are not edited in place")
    end = text.find("\n", i)
    end = len(text) if end < 0 else end
    return i + len(text[i:end].split("#", 1)[0].rstrip())


def _index(text: str) -> tuple[dict[tuple, tuple[int, int]], dict[str, list[int]]]:
    """Where each value lies ((table path..., key) -> span) and where each [[array]] element starts."""
    values: dict[tuple, tuple[int, int]] = {}
    elements: dict[str, list[int]] = {}
    table: tuple = ()
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            pos = end + 1
            continue
        header = _HEADER.match(line) if stripped.startswith("[") else None
        if header:
            name = header.group(2)
            if header.group(1) == "[[":
                elements.setdefault(name, []).append(pos)
            table = ()
            parts = name.split(".")
            for n in range(1, len(parts) + 1):
                prefix = ".".join(parts[:n])
                table += (parts[n - 1],)
                if prefix in elements:
                    table += (len(elements[prefix]) - 1,)
            pos = end + 1
            continue
        key = _KEY.match(line)
        if not key:
            raise CodexFileError(f"cannot read line {line[:60]!r}")
        start = pos + key.end()
        stop = _value_end(text, start)
        values[table + (key.group(1),)] = (start, stop)
        nxt = text.find("\n", stop)
        pos = len(text) if nxt < 0 else nxt + 1
    return values, elements


def _edits(old: dict[str, Any], new: dict[str, Any]) -> list[tuple] | None:
    """(path, value) sets, ("remove", id-index) and ("add", principle): None when not expressible."""
    if set(old) != set(new) or set(old["prompts"]) != set(new["prompts"]):
        return None
    edits: list[tuple] = []
    if old["version"] != new["version"]:
        edits.append(("set", ("version",), new["version"]))
    if [p["name"] for p in old["persona"]] != [p["name"] for p in new["persona"]]:
        return None
    for i, (a, b) in enumerate(zip(old["persona"], new["persona"])):
        if set(a) != set(b) or set(a["models"]) != set(b["models"]):
            return None
        for key in a:
            if key == "models":
                edits += [("set", ("persona", i, "models", m), b["models"][m]) for m in a["models"]
                          if a["models"][m] != b["models"][m]]
            elif a[key] != b[key]:
                edits.append(("set", ("persona", i, key), b[key]))
    edits += [("set", ("prompts", k), new["prompts"][k]) for k in old["prompts"] if old["prompts"][k] != new["prompts"][k]]
    old_ids, new_ids = [p["id"] for p in old["principle"]], [p["id"] for p in new["principle"]]
    kept = [pid for pid in old_ids if pid in new_ids]
    added = [p for p in new["principle"] if p["id"] not in old_ids]
    if new_ids != kept + [p["id"] for p in added]:
        return None
    for i, principle in enumerate(old["principle"]):
        if principle["id"] not in new_ids:
            edits.append(("remove", i))
            continue
        text = next(p["text"] for p in new["principle"] if p["id"] == principle["id"])
        if text != principle["text"]:
            edits.append(("set", ("principle", i, "text"), text))
    edits += [("add", p) for p in added]
    return edits


def _edit_in_place(text: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    edits = _edits(old, new)
    if edits is None:
        return None
    try:
        values, elements = _index(text)
    except CodexFileError as exc:
        log.info("codex edited whole, not in place: %s", exc)
        return None
    spans: list[tuple[int, int, str]] = []
    starts = elements.get("principle", [])
    headers = sorted(p for positions in elements.values() for p in positions)
    appended = ""
    for edit in edits:
        if edit[0] == "set":
            if edit[1] not in values:
                return None
            start, stop = values[edit[1]]
            spans.append((start, stop, toml_value(edit[2])))
        elif edit[0] == "remove":
            start = starts[edit[1]]
            later = [h for h in headers if h > start]
            spans.append((start, later[0] if later else len(text), ""))
        else:
            principle = edit[1]
            appended += f"\n[[principle]]\nid = {toml_value(principle['id'])}\ntext = {toml_value(principle['text'])}\n"
    out = text
    for start, stop, value in sorted(spans, reverse=True):
        out = out[:start] + value + out[stop:]
    if appended:
        out = out.rstrip("\n") + "\n" + appended
    return out


def render_codex(text: str, old: Codex, new: Codex) -> str:
    """`new` as TOML text: `text` (the file holding `old`) edited where it differs, or written whole;
    in either case it parses back to exactly `new`."""
    target = new.model_dump()
    for candidate in (_edit_in_place(text, old.model_dump(), target), toml.dumps(target)):
        if candidate is not None and _parses_to(candidate, target):
            return candidate
    raise CodexFileError("the amended codex could not be written as TOML that reads back the same")


def _parses_to(text: str, target: dict[str, Any]) -> bool:
    try:
        return Codex.model_validate(tomllib.loads(text)).model_dump() == target
    except Exception:
        return False


def parse_codex(text: str, where: str) -> Codex:
    try:
        return Codex.model_validate(tomllib.loads(text))
    except Exception as exc:
        raise CodexFileError(f"{where}: not a valid codex ({str(exc).splitlines()[0]})") from None


def unified_diff(before: str, after: str, old_version: int, new_version: int) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"codex.toml (version {old_version})", f"codex.toml (version {new_version})"))


# --- the file and its history -------------------------------------------------------------------
class CodexFile:
    """The codex file in use plus its archive; every write is one new version, atomic and recorded."""

    def __init__(self, path: Path, history_dir: Path):
        self.path, self.history_dir = path, history_dir
        self._lock = threading.Lock()

    def read(self) -> tuple[str, Codex]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CodexFileError(f"{self.path}: cannot read ({exc.strerror})") from None
        return text, parse_codex(text, str(self.path))

    def _archived(self, version: int) -> Path:
        return self.history_dir / f"codex-v{version}.toml"

    def _records_path(self) -> Path:
        return self.history_dir / "changes.json"

    def records(self) -> list[dict[str, Any]]:
        try:
            return list(read_json(self._records_path()) or [])
        except ValueError as exc:
            log.error("%s", exc)
            return []

    def write_version(self, amended: Codex, *, why: str, by: str, proposal_id: str | None = None,
                      base_text: str | None = None, expect_version: int | None = None) -> tuple[Codex, str, str]:
        """Write `amended` as the next version; returns (the written codex, the old text, the new text).

        `base_text` is the text to edit (a revert edits the archived version's text); the current
        file by default. With `expect_version`, a codex that changed meanwhile is refused."""
        with self._lock:
            old_text, current = self.read()
            if expect_version is not None and current.version != expect_version:
                raise CodexFileError(f"the codex is at version {current.version} now, not {expect_version}: "
                                     "the proposal was made against another version")
            guard_consent(current, amended)
            written = amended.model_copy(update={"version": current.version + 1})
            source_text, source = (base_text, parse_codex(base_text, "archived codex")) if base_text else (old_text, current)
            new_text = render_codex(source_text, source, written)
            self.history_dir.mkdir(parents=True, exist_ok=True)
            if not self._archived(current.version).exists():
                write_atomic(self._archived(current.version), old_text.encode("utf-8"))
            write_atomic(self.path, new_text.encode("utf-8"))
            write_atomic(self._archived(written.version), new_text.encode("utf-8"))
            records = self.records()
            records.append({"version": written.version, "previous": current.version, "at": time.time(),
                            "why": why, "by": by, "proposal_id": proposal_id})
            write_json(self._records_path(), records)
            log.info("codex version %d written (%s): %s", written.version, by, why[:120])
            return written, old_text, new_text

    def versions(self) -> list[dict[str, Any]]:
        """Every known version, oldest first: when and why it was written, and which is in use."""
        _, current = self.read()
        records = {r["version"]: r for r in self.records()}
        numbers = {current.version, *records}
        for path in self.history_dir.glob("codex-v*.toml"):
            digits = path.stem[len("codex-v"):]
            if digits.isdigit():
                numbers.add(int(digits))
        out = []
        for version in sorted(numbers):
            record = records.get(version, {})
            out.append({"version": version, "current": version == current.version,
                        "archived": self._archived(version).exists(), "at": record.get("at"),
                        "why": record.get("why") or ("the codex as first found" if not record else ""),
                        "by": record.get("by"), "proposal_id": record.get("proposal_id")})
        return out

    def revert(self, version: int, why: str) -> tuple[Codex, str, str]:
        """Restore archived `version` as a new version."""
        path = self._archived(version)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CodexFileError(f"no archived codex version {version} (see codex_history)") from None
        restored = parse_codex(text, str(path))
        try:
            return self.write_version(restored, why=why, by="revert", base_text=text)
        except AmendmentError:
            raise


__all__ = ["AmendmentError", "CodexFile", "CodexFileError", "render_codex", "toml_value", "unified_diff"]
