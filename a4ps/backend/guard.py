"""Who may change the backend's state: local clients that can read the control token.

The sockets are bound to loopback or ipc:// only (unless `zmq.allow_remote`), but any local account
can reach loopback. So every command that changes state (submit a task, rewrite a prompt, shut
down, and whatever organs register later) must carry `token`: the contents of `control.token`, a
0600 file the backend creates in its data dir. Reading commands stay open to any local client.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path

from a4ps.backend.server import RequestError
from a4ps.client.connection import control_token_path
from a4ps.privatefile import read_private, write_private

log = logging.getLogger(__name__)

READING_COMMANDS = frozenset({"ping", "get_state", "list_tools", "get_tool"})
_TOKEN_CHARS = 64


def ensure_control_token(data_dir: Path | str) -> str:
    """The backend's control token: read from the data dir, created there (atomically) if absent."""
    path = control_token_path(data_dir)
    existing = read_private(path)
    if existing is not None:
        token = existing.decode("ascii", "replace").strip()
        if len(token) == _TOKEN_CHARS and all(c in "0123456789abcdef" for c in token):
            return token
        log.warning("control token %s is malformed; writing a new one", path)
    token = write_private(path, secrets.token_hex(_TOKEN_CHARS // 2).encode(), replace=existing is not None)
    log.info("control token ready: %s", path)
    return token.decode("ascii").strip()


class CommandGuard:
    """Refuses a state-changing command whose `token` is missing or wrong (code `unauthorized`)."""

    def __init__(self, token: str, token_path: Path):
        self._token = token.encode()
        self._token_path = token_path
        self._reading = set(READING_COMMANDS)

    def allow_reading(self, cmd: str) -> None:
        """A command that only reads state: served without a token."""
        self._reading.add(cmd)

    def check(self, request: dict) -> None:
        cmd = request["cmd"]
        if cmd in self._reading:
            return
        given = request.get("token")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self._token):
            why = "without a token" if given is None else "with a wrong token"
            raise RequestError("unauthorized",
                               f"{cmd!r} changes the backend's state and was sent {why}: send field 'token' "
                               f"holding the contents of {self._token_path} (readable by the backend's user only)")
