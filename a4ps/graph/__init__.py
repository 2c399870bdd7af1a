"""The Socratic graph: ALFRED plans, BRICK and ROBIN argue until dissonance falls, ALFRED synthesizes (organ 4)."""

from a4ps.graph.socratic import SocraticGraph, TaskCancelled

__all__ = ["SocraticGraph", "TaskCancelled"]
