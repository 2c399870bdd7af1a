"""`a4ps autonomy pause|resume|status` and `a4ps inquire ["topic"]`: the autonomy from a shell."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_commands(subparsers: Any) -> None:
    autonomy = subparsers.add_parser("autonomy", help="pause, resume or show the Motivator (self-set goals)")
    autonomy.add_argument("action", choices=["pause", "resume", "status"])
    autonomy.set_defaults(func=autonomy_command)
    inquire = subparsers.add_parser("inquire", help="ask the society to reflect on its codex (a proposal follows)")
    inquire.add_argument("topic", nargs="?", default="", help="what to reflect on (optional)")
    inquire.set_defaults(func=inquire_command)


def requester(settings: Any):
    from a4ps.client import Requester, control_token_path

    return Requester(settings.zmq.rep_addr, timeout_s=10.0, token_file=control_token_path(settings.data_dir))


def ask(settings: Any, cmd: str, **args: Any) -> dict | None:
    """The reply, or None after printing why there is none (no backend, or an error reply)."""
    from a4ps.client import BackendUnavailable

    try:
        reply = requester(settings).request(cmd, **args)
    except BackendUnavailable:
        print(f"a4ps: no backend answers at {settings.zmq.rep_addr}; start it with `python -m a4ps serve`",
              file=sys.stderr)
        return None
    if not reply.get("ok"):
        print(f"a4ps: {reply.get('code')}: {reply.get('error')}", file=sys.stderr)
        return None
    return reply


def describe(autonomy: dict) -> str:
    return (f"autonomy: {autonomy['state']} ({autonomy['reason']}); goals this hour: "
            f"{autonomy['goals_this_hour']} of {autonomy['budget']}")


def autonomy_command(args: argparse.Namespace, settings: Any) -> int:
    if args.action == "status":
        reply = ask(settings, "get_state")
        if reply is None:
            return 1
        print(describe(reply["state"]["autonomy"]))
        return 0
    reply = ask(settings, "set_autonomy", state="paused" if args.action == "pause" else "running")
    if reply is None:
        return 1
    print(describe(reply["autonomy"]))
    return 0


def inquire_command(args: argparse.Namespace, settings: Any) -> int:
    reply = ask(settings, "request_inquiry", **({"topic": args.topic} if args.topic else {}))
    if reply is None:
        return 1
    print(f"inquiry queued as task {reply['task_id']}; its proposal will await your decision "
          "(`python -m a4ps proposal show`)")
    return 0
