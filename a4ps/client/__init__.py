"""Client side of the backend protocol (docs/protocol.md): used by the CLI and the UI."""

from a4ps.client.connection import BackendUnavailable, EventSubscriber, Requester

__all__ = ["BackendUnavailable", "EventSubscriber", "Requester"]
