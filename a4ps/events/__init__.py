"""In-process EventBus: how organs tell each other (and the UI) what happened (organ 7)."""

from a4ps.events.bus import Event, EventBus

__all__ = ["Event", "EventBus"]
