"""The Cadence, the philosophical loop: ALFRED reads the legislative history and proposes one amendment.

Why: principles that keep producing dissonance should change, but only with the user's approval.
The proposal is schema-constrained JSON whose target must exist and whose value must give a valid
codex that keeps `consent` (a4ps/cadence/amendment.py); a refused one is asked for again, up to
`cadence.proposal_attempts`. It then gets an impact preview, is stored (data/proposals/<id>.json)
and published as `codex_proposal`; autonomy pauses until it is decided (a4ps/cadence/gate.py).
An inquiry runs as a task of kind `inquiry` on the task worker, so it never competes with a
person's task for the model and a Stop cancels it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from a4ps.cadence.amendment import AmendmentError, Change, apply, current_values, proposal_schema
from a4ps.cadence.codex_file import CodexFile, render_codex, unified_diff
from a4ps.cadence.history import LegislativeRecord, dialogue_entry, performance_entry, prompt_history
from a4ps.cadence.preview import ImpactPreview, preview_text
from a4ps.cadence.proposals import Proposal, ProposalStore
from a4ps.config.schema import STEWARD, Settings
from a4ps.config.templates import render
from a4ps.events import EventBus
from a4ps.graph.voice import Voices

log = logging.getLogger(__name__)

PROPOSAL_TOKENS = 400  # the steward's own max_tokens caps it too; the schema's fields fit in it


class InquiryFailed(Exception):
    """No proposal came of the inquiry (every answer refused, or one is already pending)."""


class Cadence:
    """Writes, checks, previews, stores and publishes a codex proposal."""

    def __init__(self, settings: Settings, codex_file: CodexFile, store: ProposalStore, record: LegislativeRecord,
                 voices: Voices, preview: ImpactPreview, bus: EventBus,
                 performance: Callable[[], tuple[list[dict[str, Any]], list[str]]],
                 on_pending: Callable[[Proposal], None]):
        self._settings, self._file, self._store, self._record = settings, codex_file, store, record
        self._voices, self._preview, self._bus = voices, preview, bus
        self._performance, self._on_pending = performance, on_pending

    def history(self) -> tuple[list[str], list[dict[str, Any]]]:
        threshold = self._settings.graph.convergence_threshold
        dialogues = self._record.dissonant()
        personas, broken = self._performance()
        entries = [dialogue_entry(d) for d in dialogues]
        entries.append(performance_entry(self._record.performance(threshold), personas, broken, threshold))
        return entries, dialogues

    def inquire(self, task_id: str, topic: str, trigger: str, cancel: threading.Event) -> Proposal:
        made = self._store.of_task(task_id)
        if made is not None:  # killed after the proposal was stored, before the image knew the task ended
            log.info("cadence: inquiry %s made proposal %s before a restart; not asked again", task_id,
                     made.proposal_id)
            return made
        if self._store.pending() is not None:
            raise InquiryFailed("a proposal already awaits a decision")
        text, current = self._file.read()
        history, dialogues = self.history()
        system = next(p["system_prompt"] for p in self._voices.personas() if p["name"] == STEWARD)
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": render(current.prompts.inquiry, topic=topic,
                                                       history=prompt_history(history),
                                                       fields=current_values(current))}]
        schema = proposal_schema(current)
        refusals = []
        for attempt in range(1, self._settings.cadence.proposal_attempts + 1):
            data = self._voices.decide(STEWARD, messages, schema, task_id=task_id, node="inquiry", turn=attempt,
                                       cancel=cancel, max_tokens=PROPOSAL_TOKENS)
            change = Change(data["target"], data["value"], data["principle_id"])
            try:
                amended = apply(current, change)
                break
            except AmendmentError as exc:
                refusals.append(f"{change.target} ({change.operation}): {exc}")
                log.warning("cadence: proposal refused (attempt %d): %s", attempt, exc)
                self._bus.publish("token", task_id=task_id, persona=STEWARD, node="inquiry", turn=attempt,
                                  text=f"\n[proposal refused: {exc}; asking again]\n")
                messages = [*messages, {"role": "assistant", "content": json.dumps(data, ensure_ascii=False)},
                            {"role": "user", "content": f"That proposal was refused: {exc}. Propose again, as one "
                                                        f"JSON object of the same form."}]
        else:
            raise InquiryFailed("every proposal was refused: " + "; ".join(refusals))

        new_version = current.version + 1
        diff = unified_diff(text, render_codex(text, current, amended.model_copy(update={"version": new_version})),
                            current.version, new_version)
        replayable = [d for d in reversed(self._record.recent(50)) if d["answer"]]
        preview = self._preview.run(current, amended, replayable[:self._settings.cadence.preview_tasks], task_id,
                                    cancel)
        peak = max((max(d["dissonance"] or [0.0]) for d in dialogues), default=None)
        summary = (f"{len(dialogues)} dialogue(s)" + (f", peak dissonance {peak:.2f}" if peak is not None else "")
                   + f", and the performance record; trigger: {trigger}" + (f"; topic: {topic}" if topic else ""))
        proposal = Proposal(change=change.as_map(), justification=data["justification"].strip(),
                            expected_consequences=data["expected_consequences"].strip(),
                            consequences=f"{data['expected_consequences'].strip()}\n\n{preview_text(preview)}",
                            preview=preview, diff=diff, history=history, summary=summary,
                            base_version=current.version, trigger=trigger, subject=topic, task_id=task_id)
        self._store.save(proposal)
        log.info("cadence: proposal %s: %s (%s)", proposal.proposal_id, change.target, change.operation)
        self._bus.publish("codex_proposal", **proposal.public())
        self._on_pending(proposal)
        return proposal
