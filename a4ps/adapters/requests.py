"""The adapters' backend commands: `list_adapters`, `promote_adapter`, `rollback_adapter`, `gate_adapters`.

A promotion or a rollback is answered at once with its swap id: the swap itself happens between
tasks (a4ps/adapters/swap.py), and its `adapter_swapped` (or `adapter_swap_failed`) event carries the
same swap id. A missing or damaged adapter is refused here, before anything changes.
"""

from __future__ import annotations

from typing import Any

from a4ps.adapters.jobs import JobError, check_name
from a4ps.adapters.registry import AdapterRegistry
from a4ps.adapters.swap import SwapError
from a4ps.backend.server import RequestError


def _name(request: dict, field: str) -> str:
    if field not in request:
        raise RequestError("bad_request", f"missing field {field!r}")
    try:
        return check_name(field, request[field])
    except JobError as exc:
        raise RequestError(exc.code, str(exc)) from None


def register(table: Any, adapters: AdapterRegistry) -> None:
    """Add the commands to the backend's CommandTable (all but list_adapters need the token)."""

    def list_adapters(request: dict) -> dict[str, Any]:
        return adapters.listing()

    def promote_adapter(request: dict) -> dict[str, Any]:
        persona, job_id = _name(request, "persona"), _name(request, "job_id")
        try:
            swap_id = adapters.promote(persona, job_id)
        except SwapError as exc:
            raise RequestError(exc.code, str(exc)) from None
        return {"swap_id": swap_id, "persona": persona, "adapter": job_id, "applied": "before the next task"}

    def rollback_adapter(request: dict) -> dict[str, Any]:
        persona = _name(request, "persona")
        try:
            swap_id, target = adapters.rollback(persona)
        except SwapError as exc:
            raise RequestError(exc.code, str(exc)) from None
        return {"swap_id": swap_id, "persona": persona, "adapter": target, "applied": "before the next task"}

    def gate_adapters(request: dict) -> dict[str, Any]:
        adapters.request_gate()
        return {"gating": adapters.snapshot()["gating"]}

    table.register("list_adapters", list_adapters, reads=True)
    table.register("promote_adapter", promote_adapter)
    table.register("rollback_adapter", rollback_adapter)
    table.register("gate_adapters", gate_adapters)
