"""The backend process: composition root, task queue and ZeroMQ server (organ 11)."""
