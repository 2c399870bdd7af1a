"""BAT OS (a4ps): a local society of LLM personas. Nothing is built at import time."""

__version__ = "0.1.0"
