"""The fine-tune's backend commands: `finetune`, `cancel_finetune` and `finetune_status` (README).

Why `finetune` answers at once: one server thread owns both sockets, so a command that waited the
minutes of a job would stop every event and every other command. It answers with the job id; the
`finetune_job` events (same `job_id`) and `finetune_progress` follow the job.
"""

from __future__ import annotations

from typing import Any

from a4ps.backend.server import RequestError
from a4ps.finetune.tuner import FineTuneRefused, FineTuner

MAX_STEPS = 100000


def register(table: Any, tuner: FineTuner) -> None:
    """Add the commands to the backend's CommandTable (finetune and cancel_finetune need the token)."""

    def finetune(request: dict) -> dict:
        persona, steps = request.get("persona"), request.get("steps")
        if not isinstance(persona, str) or not persona.strip():
            raise RequestError("bad_request", "field 'persona' must be a non-empty string")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS):
            raise RequestError("invalid_value", f"field 'steps' must be an integer from 1 to {MAX_STEPS}")
        try:
            job = tuner.request(persona, steps)
        except FineTuneRefused as exc:
            raise RequestError(exc.code, str(exc)) from None
        return {"job_id": job["job_id"], "persona": job["persona"], "finetune": tuner.snapshot()}

    def cancel_finetune(request: dict) -> dict:
        job_id = request.get("job_id")
        if job_id is not None and not isinstance(job_id, str):
            raise RequestError("bad_request", "field 'job_id' must be a string")
        try:
            return tuner.cancel(job_id)
        except FineTuneRefused as exc:
            raise RequestError(exc.code, str(exc)) from None

    def finetune_status(request: dict) -> dict[str, Any]:
        return {"finetune": tuner.snapshot()}

    table.register("finetune", finetune)
    table.register("cancel_finetune", cancel_finetune)
    table.register("finetune_status", finetune_status, reads=True)
