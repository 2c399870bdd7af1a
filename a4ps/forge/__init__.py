"""ToolForge: BRICK writes, tests and uses its own tools, always inside the sandbox (organ 5)."""

from a4ps.forge.forge import ForgeOutcome, ToolCallOutcome, ToolForge, ToolRunner
from a4ps.forge.registry import Tool, ToolRegistry

__all__ = ["ForgeOutcome", "Tool", "ToolCallOutcome", "ToolForge", "ToolRegistry", "ToolRunner"]
