"""Codex proposals on disk: `<data_dir>/proposals/<id>.json`, written atomically at every change.

Why: a proposal waits for a person, possibly for days and across crashes (SIGKILL included), so it
lives in its own file from the moment it is published; its status records the decision and why.
The legislative history is part of it, and `history_digest` (sha256 of the history's canonical
JSON: a list of strings, UTF-8, no spaces, keys sorted) is what an approval must send back to prove
the history was fetched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from a4ps.atomicfile import read_json, write_json

log = logging.getLogger(__name__)

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"


def history_digest(history: list[str]) -> str:
    canonical = json.dumps(history, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class Proposal:
    change: dict[str, str]
    justification: str
    expected_consequences: str
    consequences: str
    preview: dict[str, Any]
    diff: str
    history: list[str]
    summary: str
    base_version: int
    trigger: str
    subject: str = ""  # what the person asked the society to reflect on, if anything
    proposal_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: float = field(default_factory=time.time)
    status: str = PENDING
    decided_at: float | None = None
    reason: str = ""
    new_version: int | None = None

    @property
    def history_digest(self) -> str:
        return history_digest(self.history)

    def public(self, *, with_history: bool = True) -> dict[str, Any]:
        """The fields clients see (`codex_proposal`, `get_proposal`, the snapshot)."""
        out = asdict(self)
        out["history_digest"] = self.history_digest
        out["history_entries"] = len(self.history)
        if not with_history:
            del out["history"]
        return out


class ProposalStore:
    """One JSON file per proposal; at most one is pending."""

    def __init__(self, folder: Path):
        self._folder = folder
        self._lock = threading.Lock()

    def _path(self, proposal_id: str) -> Path:
        return self._folder / f"{proposal_id}.json"

    def save(self, proposal: Proposal) -> None:
        with self._lock:
            write_json(self._path(proposal.proposal_id), asdict(proposal))

    def get(self, proposal_id: str) -> Proposal | None:
        if not proposal_id.isalnum():
            return None
        return self._load(self._path(proposal_id))

    def _load(self, path: Path) -> Proposal | None:
        try:
            data = read_json(path)
            return Proposal(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError) as exc:
            log.error("proposal file %s is unreadable (%s); it is ignored", path, exc)
            return None

    def pending(self) -> Proposal | None:
        """The pending proposal (the newest, should there ever be several)."""
        found = [p for path in sorted(self._folder.glob("*.json")) if (p := self._load(path)) and p.status == PENDING]
        return max(found, key=lambda p: p.created_at) if found else None

    def all(self) -> list[Proposal]:
        found = [p for path in sorted(self._folder.glob("*.json")) if (p := self._load(path))]
        return sorted(found, key=lambda p: p.created_at)
