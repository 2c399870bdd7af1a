"""`a4ps proposal show|approve|reject` and `a4ps codex history|revert N`: the codex gate from a shell.

`approve` prints the whole legislative history first and asks for confirmation (unless --yes);
it then sends the history's digest, as the backend demands of every client.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from a4ps.autonomy.commands import ask


def add_commands(subparsers: Any) -> None:
    proposal = subparsers.add_parser("proposal", help="show, approve or reject the pending codex proposal")
    proposal.add_argument("action", choices=["show", "approve", "reject"])
    proposal.add_argument("--yes", action="store_true", help="approve without asking (the history is still printed)")
    proposal.add_argument("--reason", default="", help="why (recorded with the decision)")
    proposal.set_defaults(func=proposal_command)
    codex = subparsers.add_parser("codex", help="the codex versions, and restoring one")
    codex.add_argument("action", choices=["history", "revert"])
    codex.add_argument("version", nargs="?", type=int, help="for revert: the version to restore")
    codex.set_defaults(func=codex_command)


def _show(proposal: dict, *, history: bool) -> None:
    change = proposal["change"]
    print(f"proposal {proposal['proposal_id']} (against codex version {proposal['base_version']}, "
          f"trigger {proposal['trigger']}): {change['operation']} {change['target']}")
    print(f"\nJustification: {proposal['justification']}\n\nConsequences:\n{proposal['consequences']}")
    print(f"\nDiff:\n{proposal['diff']}")
    print(f"History: {proposal['summary']} ({proposal['history_entries']} entries)")
    if history:
        for number, entry in enumerate(proposal["history"], 1):
            print(f"\n--- history #{number} ---\n{entry}")


def proposal_command(args: argparse.Namespace, settings: Any) -> int:
    reply = ask(settings, "get_proposal")
    if reply is None:
        return 1
    proposal = reply["proposal"]
    if proposal is None:
        print("no proposal is pending")
        return 0 if args.action == "show" else 1
    if args.action == "show":
        _show(proposal, history=True)
        return 0
    if args.action == "approve":
        _show(proposal, history=True)
        if not args.yes:
            try:
                answer = input("\nYou have read the history above. Approve this amendment? [y/N] ").strip().lower()
            except EOFError:
                answer = ""
            if answer not in ("y", "yes"):
                print("not approved")
                return 1
    decided = ask(settings, "decide_proposal", proposal_id=proposal["proposal_id"], decision=args.action,
                  history_digest=proposal["history_digest"], reason=args.reason)
    if decided is None:
        return 1
    if decided["status"] == "approved":
        print(f"approved: the codex is now version {decided['new_version']}")
    else:
        print("rejected: the codex is unchanged")
    return 0


def codex_command(args: argparse.Namespace, settings: Any) -> int:
    if args.action == "revert":
        if args.version is None:
            print("a4ps codex revert: which version? (see `python -m a4ps codex history`)", file=sys.stderr)
            return 2
        reply = ask(settings, "revert_codex", version=args.version)
        if reply is None:
            return 1
        print(f"version {reply['restored']} restored as version {reply['version']}")
        return 0
    reply = ask(settings, "codex_history")
    if reply is None:
        return 1
    for v in reply["versions"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(v["at"])) if v["at"] else "-"
        mark = "*" if v["current"] else " "
        print(f"{mark} version {v['version']:>3}  {when}  {v['by'] or '-':8}  {v['why'][:100]}")
    return 0
