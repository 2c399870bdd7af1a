"""The gate a codex amendment passes: the backend itself refuses an approval that did not read the history.

Why: the UI's disabled Approve button is a courtesy; any client can send `decide_proposal`. So the
backend demands `history_digest`, the sha256 of the proposal's history (a4ps/cadence/proposals.py),
which a client has only after fetching it (`get_proposal`); without it: code `history_not_read`.
Approval applies the change to the codex file (atomic, version + 1, archived: codex_file.py) and hands
the new codex to the backend, which reloads the personas between tasks. Rejection changes nothing but
the proposal's record. Either way autonomy resumes.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from typing import Any, Callable

from a4ps.cadence.amendment import AmendmentError, Change, apply
from a4ps.cadence.codex_file import CodexFile, CodexFileError, unified_diff
from a4ps.cadence.proposals import APPROVED, PENDING, REJECTED, Proposal, ProposalStore
from a4ps.config.schema import Codex
from a4ps.errors import CodedError
from a4ps.events import EventBus

log = logging.getLogger(__name__)

APPROVE, REJECT = "approve", "reject"


class GateError(CodedError):
    """A decision on a proposal that cannot be taken; `code` goes into the error reply."""


class CodexGate:
    """Decides pending proposals and reverts versions; see the module docstring."""

    def __init__(self, store: ProposalStore, codex_file: CodexFile, bus: EventBus,
                 on_codex: Callable[[Codex], None], on_decided: Callable[[], None]):
        self._store, self._file, self._bus = store, codex_file, bus
        self._on_codex, self._on_decided = on_codex, on_decided
        self._lock = threading.Lock()

    def pending(self) -> Proposal | None:
        return self._store.pending()

    def decide(self, proposal_id: str, decision: str, digest: str | None, reason: str) -> Proposal:
        with self._lock:
            proposal = self._store.get(proposal_id)
            if proposal is None:
                raise GateError("not_found", f"no proposal {proposal_id!r}")
            if proposal.status != PENDING:
                raise GateError("already_decided", f"proposal {proposal_id} was {proposal.status} already")
            if decision == APPROVE:
                self._approve(proposal, digest, reason)
            elif decision == REJECT:
                proposal.status, proposal.decided_at, proposal.reason = REJECTED, time.time(), reason
                self._store.save(proposal)
                log.info("proposal %s rejected%s", proposal_id, f": {reason}" if reason else "")
            else:
                raise GateError("invalid_value", "decision must be 'approve' or 'reject'")
        self._bus.publish("proposal_decided", proposal_id=proposal.proposal_id, decision=decision,
                          reason=reason, new_version=proposal.new_version)
        self._on_decided()
        return proposal

    def _approve(self, proposal: Proposal, digest: str | None, reason: str) -> None:
        if not isinstance(digest, str) or not hmac.compare_digest(digest, proposal.history_digest):
            why = "without" if not digest else "with a wrong"
            raise GateError("history_not_read",
                            f"approval sent {why} history_digest: fetch the proposal with get_proposal, read its "
                            "history, and send the sha256 of the history (its history_digest)")
        try:
            _, current = self._file.read()
            amended = apply(current, Change.from_map(proposal.change))
            written, old_text, new_text = self._file.write_version(
                amended, why=proposal.justification, by="proposal", proposal_id=proposal.proposal_id,
                expect_version=proposal.base_version)
        except AmendmentError as exc:
            raise GateError("invalid_value", f"the proposal no longer applies: {exc}") from None
        except CodexFileError as exc:
            raise GateError("stale_proposal", str(exc)) from None
        except OSError as exc:
            raise GateError("not_saved", f"the codex could not be written: {exc}") from None
        proposal.status, proposal.decided_at, proposal.reason = APPROVED, time.time(), reason
        proposal.new_version = written.version
        self._store.save(proposal)
        self._changed(written, old_text, new_text, f"proposal {proposal.proposal_id}: {proposal.justification}",
                      "proposal", proposal.proposal_id)

    def revert(self, version: int) -> Codex:
        with self._lock:
            try:
                written, old_text, new_text = self._file.revert(version, f"revert to version {version}")
            except CodexFileError as exc:
                raise GateError("not_found" if "no archived" in str(exc) else "invalid_value", str(exc)) from None
            except AmendmentError as exc:
                raise GateError("invalid_value", str(exc)) from None
        self._changed(written, old_text, new_text, f"revert to version {version}", "revert", None)
        return written

    def history(self) -> list[dict[str, Any]]:
        return self._file.versions()

    def _changed(self, written: Codex, old_text: str, new_text: str, why: str, by: str,
                 proposal_id: str | None) -> None:
        self._bus.publish("codex_changed", version=written.version, previous_version=written.version - 1,
                          why=why, by=by, proposal_id=proposal_id,
                          diff=unified_diff(old_text, new_text, written.version - 1, written.version))
        self._on_codex(written)
