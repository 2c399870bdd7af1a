"""The training data: golden chat samples read and validated, and the held-out split.

Why strict: a fine-tune that silently skips a malformed line trains on less than the user thinks,
and one that trips on it minutes into a job wastes the job. So every line is checked before any
model loads, and a bad one is a DatasetError naming the file, the line and what is wrong. The one
exception is a last line without its newline that is not JSON: that is an append cut short by a
crash (a4ps/curator/lines.py), never acknowledged, so it is skipped and counted.

The held-out split is a pure function of each sample's key (its episode id, else a hash of its
messages): the same sample is held out in every job and by the gate (a4ps/adapters imports
`split_holdout`), however the file grows or is reordered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeVar

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 64

T = TypeVar("T")


class DatasetError(ValueError):
    """The dataset cannot be trained on; the message names the file and line."""


@dataclass(frozen=True)
class Sample:
    """One golden line: its key, where it was, the chat messages and its provenance."""

    id: str
    line: int
    messages: list[dict[str, str]]
    provenance: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What the trainer sees: the messages only."""
        return {"messages": self.messages}


@dataclass
class Dataset:
    path: Path
    samples: list[Sample]
    sha256: str
    torn_tail: bool = False


def message_key(messages: list[dict[str, str]]) -> str:
    canonical = json.dumps(messages, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def sample_key(sample: Sample | dict[str, Any]) -> str:
    """A Sample's id, or the same key computed from a raw golden record."""
    if isinstance(sample, Sample):
        return sample.id
    episode = (sample.get("provenance") or {}).get("episode_id")
    return episode if isinstance(episode, str) and episode else message_key(sample["messages"])


def validate_messages(messages: Any) -> list[dict[str, str]]:
    """The messages, or ValueError saying what is wrong (roles, order, empty text)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    if len(messages) > MAX_MESSAGES:
        raise ValueError(f"'messages' has {len(messages)} entries (at most {MAX_MESSAGES})")
    out = []
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise ValueError(f"message {number} must be an object with only 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"message {number}: role must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"message {number} ({role}): 'content' must be non-empty text")
        if role == "system" and number != 1:
            raise ValueError(f"message {number}: a system message may only come first")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in out):
        raise ValueError("no user message")
    if out[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's (what is learnt)")
    return out


def load_dataset(path: Path) -> Dataset:
    """Every sample of a golden JSONL file; DatasetError on the first bad line or when it is empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such dataset file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from None
    lines = raw.split(b"\n")
    ends_with_newline = lines[-1] == b""
    if ends_with_newline:
        lines.pop()
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    torn = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if number == len(lines) and not ends_with_newline:
                torn = True  # an append cut short by a crash: never acknowledged
                continue
            raise DatasetError(f"{path}:{number}: not a JSON line ({exc})") from None
        if not isinstance(record, dict) or "messages" not in record:
            raise DatasetError(f"{path}:{number}: expected an object with 'messages'")
        try:
            messages = validate_messages(record["messages"])
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: {exc}") from None
        provenance = record.get("provenance") if isinstance(record.get("provenance"), dict) else {}
        key = sample_key({"messages": messages, "provenance": provenance})
        if key in seen:
            raise DatasetError(f"{path}:{number}: the same sample as line {seen[key]} ({key})")
        seen[key] = number
        samples.append(Sample(key, number, messages, provenance))
    if not samples:
        raise DatasetError(f"{path}: no samples")
    return Dataset(path, samples, hashlib.sha256(raw).hexdigest(), torn)


def holdout_score(key: str) -> float:
    """A uniform number in [0, 1) fixed by the key."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) / float(1 << 64)


def split_holdout(samples: Iterable[T], fraction: float) -> tuple[list[T], list[T]]:
    """(train, holdout): a sample is held out when its key's score is below `fraction`.

    Deterministic per sample (Sample objects or raw golden records alike), order kept. With two or
    more samples and none scoring below, the lowest-scoring one is held out, so a gate always has at
    least one prompt; a fraction of 0 holds out nothing.
    """
    items = list(samples)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), not {fraction}")
    scores = [holdout_score(sample_key(s)) for s in items]
    held = {i for i, score in enumerate(scores) if score < fraction}
    if fraction > 0 and not held and len(items) >= 2:
        held = {min(range(len(items)), key=scores.__getitem__)}
    if held and len(held) == len(items):
        held.discard(max(held, key=scores.__getitem__))  # something must be left to train on
    return [s for i, s in enumerate(items) if i not in held], [s for i, s in enumerate(items) if i in held]
