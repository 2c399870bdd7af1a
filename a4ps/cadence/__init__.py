"""The philosophical loop (organ 10): codex amendments ALFRED proposes and only the user approves.

Modules: amendment (what may change; the `consent` rule), codex_file (atomic versioned writes and the
archive), proposals (stored proposals, the history digest), history (the legislative record),
preview (the blind impact preview), inquiry (the Cadence), gate (approve/reject/revert), commands (CLI).
Nothing is imported here, so the CLI's `proposal` and `codex` commands do not load the graph.
"""
