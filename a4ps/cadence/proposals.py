"""Codex proposals on disk: `<data_dir>/proposals/<id>.json`, written atomically at every change.

Why: a proposal waits for a person, possibly for days and across crashes (SIGKILL included), so it
lives in its own file from the moment it is published; its status records the decision and why.
The living image keeps a copy of the pending one: at start a missing or damaged file is restored
from it (`ProposalStore.restore`); where both exist and differ, the file, where decisions are
written, wins.
The legislative history is part of it, and `history_digest` (sha256 of the history's canonical
JSON: a list of strings, UTF-8, no spaces, keys sorted) is what an approval must send back to prove
the history was fetched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from a4ps.atomicfile import read_json, write_json

log = logging.getLogger(__name__)

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
DERIVED = ("history_digest", "history_entries")  # in public(), computed from the rest


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
    task_id: str = ""  # the inquiry task that made it: a re-run after a crash finds it, never asks again
    proposal_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: float = field(default_factory=time.time)
    status: str = PENDING
    decided_at: float | None = None
    reason: str = ""
    new_version: int | None = None

    @classmethod
    def from_map(cls, data: Any) -> "Proposal":
        """A proposal from a stored map (its file, or public() in the image); ValueError names the flaw."""
        if not isinstance(data, dict):
            raise ValueError(f"a proposal is a map, not {type(data).__name__}")
        try:
            proposal = cls(**{k: v for k, v in data.items() if k not in DERIVED})
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(proposal.proposal_id, str) or not proposal.proposal_id.isalnum():
            raise ValueError(f"proposal_id {proposal.proposal_id!r} is not alphanumeric")
        if proposal.status not in (PENDING, APPROVED, REJECTED):
            raise ValueError(f"status {proposal.status!r} is not pending, approved or rejected")
        if not isinstance(proposal.history, list) or not all(isinstance(e, str) for e in proposal.history):
            raise ValueError("history is not a list of strings")
        if not isinstance(proposal.change, dict) or not isinstance(proposal.diff, str):
            raise ValueError("change is not a map or diff not a string")
        if "history_digest" in data and data["history_digest"] != proposal.history_digest:
            raise ValueError("its history does not match its history_digest")
        return proposal

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
            return None if data is None else Proposal.from_map(data)
        except ValueError as exc:
            log.error("proposal file %s is unreadable (%s); it is ignored", path, exc)
            return None

    def restore(self, kept: Any) -> Proposal | None:
        """At start, with the pending proposal the living image kept (public() map, or None): its file is
        written again when missing or damaged (a damaged one is kept aside as .damaged); when the file
        differs, the file wins. Returns the proposal as the store now holds it."""
        if kept is None:
            return None
        try:
            copy = Proposal.from_map(kept)
        except ValueError as exc:
            log.error("the living image's pending proposal is unusable (%s); the proposal files alone count", exc)
            return None
        path = self._path(copy.proposal_id)
        with self._lock:
            try:
                raw = read_json(path)
                stored = None if raw is None else Proposal.from_map(raw)
            except ValueError as exc:
                aside = path.with_name(f"{path.name}.damaged")
                log.error("proposal file %s is damaged (%s); kept aside as %s", path, exc, aside.name)
                try:
                    os.replace(path, aside)
                except OSError as move_error:
                    log.error("could not move %s aside: %s", path, move_error)
                stored = None
            if stored is None:
                try:
                    write_json(path, asdict(copy))
                except OSError as exc:
                    log.error("proposal %s could not be restored to %s: %s", copy.proposal_id, path, exc)
                    return None
                log.warning("proposal %s (%s) restored from the living image to %s: its file was missing or "
                            "damaged", copy.proposal_id, copy.status, path)
                return copy
        if asdict(stored) != asdict(copy):
            log.warning("proposal %s: the living image's copy (%s) differs from its file (%s); the file wins, "
                        "as the record decisions are written to", copy.proposal_id, copy.status, stored.status)
        return stored

    def pending(self) -> Proposal | None:
        """The pending proposal (the newest, should there ever be several)."""
        found = [p for path in sorted(self._folder.glob("*.json")) if (p := self._load(path)) and p.status == PENDING]
        return max(found, key=lambda p: p.created_at) if found else None

    def of_task(self, task_id: str) -> Proposal | None:
        """The proposal the inquiry task `task_id` already made, if any."""
        return next((p for p in self.all() if task_id and p.task_id == task_id), None)

    def all(self) -> list[Proposal]:
        found = [p for path in sorted(self._folder.glob("*.json")) if (p := self._load(path))]
        return sorted(found, key=lambda p: p.created_at)
