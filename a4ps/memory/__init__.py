"""H-MEM, the long-term memory (organ 6): LanceDB rows of task summaries and their episodic chunks.

Nothing is opened at import time; the composition root builds a MemoryStore (see ``open_memory``).
"""

from a4ps.memory.embedders import Embedder, EmbedderError, MiniLMEmbedder, OllamaEmbedder, make_embedder
from a4ps.memory.records import Episode, MemoryChunk, MemoryHit, MemoryStats
from a4ps.memory.store import MemoryStore, open_memory

__all__ = ["Embedder", "EmbedderError", "Episode", "MemoryChunk", "MemoryHit", "MemoryStats", "MemoryStore",
           "MiniLMEmbedder", "OllamaEmbedder", "make_embedder", "open_memory"]
