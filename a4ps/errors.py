"""The one shape of a refusal an organ hands back to the command socket: a stable `code` for clients
to act on and a message for people (docs/protocol.md lists the codes)."""

from __future__ import annotations


class CodedError(Exception):
    """A request that cannot be done; `code` goes into the error reply beside the message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
