"""The philosophical loop (organ 10): codex amendments ALFRED proposes and only the user approves."""

from a4ps.cadence.amendment import CONSENT, AmendmentError, Change, apply, guard_consent, targets
from a4ps.cadence.codex_file import CodexFile, CodexFileError
from a4ps.cadence.gate import APPROVE, REJECT, CodexGate, GateError
from a4ps.cadence.history import LegislativeRecord
from a4ps.cadence.inquiry import Cadence, InquiryFailed
from a4ps.cadence.preview import ImpactPreview
from a4ps.cadence.proposals import Proposal, ProposalStore, history_digest

__all__ = ["APPROVE", "CONSENT", "REJECT", "AmendmentError", "Cadence", "Change", "CodexFile", "CodexFileError",
           "CodexGate", "GateError", "ImpactPreview", "InquiryFailed", "LegislativeRecord", "Proposal",
           "ProposalStore", "apply", "guard_consent", "history_digest", "targets"]
