"""ModelManager: one chat/embed interface over the embedded (llama.cpp) and Ollama providers (organ 2)."""

from a4ps.models.manager import ModelManager, select_provider
from a4ps.models.types import ChatResult, ModelError, StructuredOutputError

__all__ = ["ChatResult", "ModelError", "ModelManager", "StructuredOutputError", "select_provider"]
