"""The adapters organ (the swap half of organ 9): the gate, the cognitive atomic swap, the registry."""

from a4ps.adapters.choice import AdapterChoice
from a4ps.adapters.registry import AdapterRegistry
from a4ps.adapters.swap import SwapError

__all__ = ["AdapterChoice", "AdapterRegistry", "SwapError"]
