"""The Curator's backend commands: `curate`, `rate_task` and `curator_stats` (docs in README).

Why a `curate` reply does not wait for the verdicts: one server thread owns both sockets, so a
command that waited minutes for the model would stop every event and every other command. It
answers with the pass id at once; the pass's `curated` event (same `pass_id`) carries how many
episodes were judged and how many became golden (`a4ps curate` waits for it).
"""

from __future__ import annotations

from typing import Any

from a4ps.backend.server import RequestError
from a4ps.curator.curator import Curator, RatingError
from a4ps.curator.ledger import RATINGS

MAX_TASK_ID_CHARS = 64


def register(table: Any, curator: Curator) -> None:
    """Add the commands to the backend's CommandTable (rate_task and curate need the token)."""

    def curate(request: dict) -> dict:
        return {"pass_id": curator.request_pass(), "curator": curator.snapshot()}

    def rate_task(request: dict) -> dict:
        task_id, rating = request.get("task_id"), request.get("rating")
        if not isinstance(task_id, str) or not task_id.strip():
            raise RequestError("bad_request", "field 'task_id' must be a non-empty string")
        if len(task_id) > MAX_TASK_ID_CHARS or not task_id.isalnum():
            raise RequestError("invalid_value", f"task_id must be letters and digits, at most {MAX_TASK_ID_CHARS}")
        if not isinstance(rating, str) or rating not in RATINGS:
            raise RequestError("invalid_value", "field 'rating' must be 'up' or 'down'")
        try:
            return curator.rate(task_id, rating)
        except RatingError as exc:
            raise RequestError(exc.code, str(exc)) from None

    def curator_stats(request: dict) -> dict[str, Any]:
        return {"stats": curator.stats(), "curator": curator.snapshot()}

    table.register("curate", curate)
    table.register("rate_task", rate_task)
    table.register("curator_stats", curator_stats, reads=True)
