"""The Curator (organ 8): ALFRED judges finished dialogues and keeps the best as golden samples.

Modules: lines (durable JSON lines: whole lines, fsynced, a torn tail skipped and reported),
ledger (which episodes were judged, the user's ratings, on disk), golden (the chat-format datasets,
one JSONL per persona), judge (ALFRED's schema-constrained verdict on one episode), curator (the
loop, the ratings, the stats), requests (the backend commands), commands (CLI).
Nothing is imported here, so the CLI's `rate` and `curator` commands do not load the graph.
"""
