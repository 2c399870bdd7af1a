"""Client side of the backend protocol (docs/protocol.md): used by the CLI and the UI."""

from a4ps.client.connection import (BackendUnavailable, EventSubscriber, Requester, control_token_path,
                                    read_token)

__all__ = ["BackendUnavailable", "EventSubscriber", "Requester", "control_token_path", "read_token"]
