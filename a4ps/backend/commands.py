"""The REP commands: the token guard, argument checking and dispatch to the backend (docs/protocol.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from a4ps.backend.guard import CommandGuard
from a4ps.backend.server import RequestError
from a4ps.cadence.codex_file import CodexFileError
from a4ps.cadence.gate import GateError
from a4ps.protos import ImageSaveError
from a4ps.protos.proto import ProtoEditError

if TYPE_CHECKING:
    from a4ps.backend.app import Backend

MAX_TASK_CHARS = 20_000


def _field(request: dict, name: str, kind: type, *, required: bool = True) -> Any:
    if name not in request:
        if required:
            raise RequestError("bad_request", f"missing field {name!r}")
        return None
    value = request[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise RequestError("bad_request", f"field {name!r} must be {kind.__name__}")
    return value


class CommandTable:
    """Maps `cmd` to a method; each validates its own arguments. State-changing commands are
    refused without the control token (see a4ps/backend/guard.py)."""

    def __init__(self, backend: "Backend", guard: CommandGuard):
        self._backend = backend
        self._guard = guard
        self._commands: dict[str, Callable[[dict], dict]] = {
            "ping": self.ping,
            "submit_task": self.submit_task,
            "get_state": self.get_state,
            "update_proto": self.update_proto,
            "cancel_task": self.cancel_task,
            "save_image": self.save_image,
            "shutdown": self.shutdown,
            "list_tools": self.list_tools,
            "get_tool": self.get_tool,
            "set_autonomy": self.set_autonomy,
            "request_inquiry": self.request_inquiry,
            "get_proposal": self.get_proposal,
            "decide_proposal": self.decide_proposal,
            "codex_history": self.codex_history,
            "revert_codex": self.revert_codex,
        }
        for name in ("get_proposal", "codex_history"):
            self._guard.allow_reading(name)

    def register(self, name: str, command: Callable[[dict], dict], *, reads: bool = False) -> None:
        """Organs that arrive later (forge, cadence) add their commands here; they need the token
        unless `reads` says they only read state."""
        self._commands[name] = command
        if reads:
            self._guard.allow_reading(name)

    def __call__(self, request: dict) -> dict:
        command = self._commands.get(request["cmd"])
        if command is None:
            raise RequestError("unknown_command", f"unknown command {request['cmd']!r} "
                                                  f"(known: {', '.join(sorted(self._commands))})")
        self._guard.check(request)
        return command(request)

    def ping(self, request: dict) -> dict:
        return self._backend.ping()

    def submit_task(self, request: dict) -> dict:
        text = _field(request, "text", str).strip()
        if not text:
            raise RequestError("invalid_value", "task text is empty")
        if len(text) > MAX_TASK_CHARS:
            raise RequestError("invalid_value", f"task text is over {MAX_TASK_CHARS} characters")
        source = _field(request, "source", str, required=False) or "user"
        task, position, warning = self._backend.submit(text, source[:40])
        return {"task_id": task.task_id, "position": position, **({"warning": warning} if warning else {})}

    def get_state(self, request: dict) -> dict:
        state, seq = self._backend.snapshot_with_seq()
        return {"state": state, "seq": seq}

    def update_proto(self, request: dict) -> dict:
        name = _field(request, "name", str)
        changes = _field(request, "changes", dict)
        try:
            proto = self._backend.protos.update(name, changes)
        except KeyError as exc:
            raise RequestError("not_found", str(exc.args[0])) from None
        except ProtoEditError as exc:
            raise RequestError("invalid_value", str(exc)) from None
        warning = self._backend.save_image_or_warn("proto edited")
        return {"proto": proto.as_map(), **({"warning": warning} if warning else {})}

    def cancel_task(self, request: dict) -> dict:
        task_id = _field(request, "task_id", str)
        status = self._backend.cancel(task_id)
        if status is None:
            raise RequestError("not_found", f"no task {task_id!r}")
        return {"status": status}

    def save_image(self, request: dict) -> dict:
        try:
            path = self._backend.save_image("requested")
        except ImageSaveError as exc:
            raise RequestError("not_saved", str(exc)) from None
        return {"path": str(path), "saved_at": self._backend.image.last_saved_at}

    def shutdown(self, request: dict) -> dict:
        self._backend.request_stop("shutdown command")
        return {"stopping": True}

    def list_tools(self, request: dict) -> dict:
        return {"tools": [tool.manifest() for tool in self._backend.forge.registry.all()]}

    def get_tool(self, request: dict) -> dict:
        name = _field(request, "name", str)
        tool = self._backend.forge.registry.get(name)
        if tool is None:
            raise RequestError("not_found", f"no tool named {name!r}")
        return {"tool": tool.as_map()}

    # --- autonomy and the codex (a4ps/autonomy, a4ps/cadence) -------------------------------------
    def set_autonomy(self, request: dict) -> dict:
        state = _field(request, "state", str)
        if state not in ("running", "paused"):
            raise RequestError("invalid_value", "state must be 'running' or 'paused'")
        try:
            return {"autonomy": self._backend.motivator.set_choice(state)}
        except OSError as exc:
            raise RequestError("not_saved", f"the choice could not be saved: {exc}") from None

    def request_inquiry(self, request: dict) -> dict:
        from a4ps.backend.app import InquiryRefused

        topic = (_field(request, "topic", str, required=False) or "").strip()
        if len(topic) > 500:
            raise RequestError("invalid_value", "topic is over 500 characters")
        try:
            task = self._backend.request_inquiry(topic, "user")
        except InquiryRefused as exc:
            raise RequestError(exc.code, str(exc)) from None
        return {"task_id": task.task_id}

    def get_proposal(self, request: dict) -> dict:
        pending = self._backend.gate.pending()
        return {"proposal": pending.public() if pending is not None else None}

    def decide_proposal(self, request: dict) -> dict:
        proposal_id = _field(request, "proposal_id", str)
        decision = _field(request, "decision", str)
        digest = _field(request, "history_digest", str, required=False)
        reason = (_field(request, "reason", str, required=False) or "").strip()[:2000]
        try:
            proposal = self._backend.gate.decide(proposal_id, decision, digest, reason)
        except GateError as exc:
            raise RequestError(exc.code, str(exc)) from None
        return {"proposal_id": proposal.proposal_id, "status": proposal.status, "new_version": proposal.new_version}

    def codex_history(self, request: dict) -> dict:
        try:
            return {"versions": self._backend.gate.history(), "current": self._backend.codex_file.read()[1].version}
        except CodexFileError as exc:
            raise RequestError("invalid_value", str(exc)) from None

    def revert_codex(self, request: dict) -> dict:
        version = _field(request, "version", int)
        try:
            codex = self._backend.gate.revert(version)
        except GateError as exc:
            raise RequestError(exc.code, str(exc)) from None
        return {"version": codex.version, "restored": version}
