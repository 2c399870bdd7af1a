"""The autotelic loop (organ 7): the Motivator sets the society goals of its own, within a budget.

Modules: ledger (the user's choice and the goals set, on disk), novelty (is a goal a repeat),
goals (ALFRED writes one), curiosity (BRICK tries a new tool), motivator (the loop), commands (CLI).
Nothing is imported here, so the CLI's `autonomy` command does not load the graph.
"""
