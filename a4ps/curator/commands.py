"""`a4ps curate`, `a4ps rate TASK_ID up|down` and `a4ps curator stats`: the Curator from a shell.

`curate` asks the backend for a pass and waits for its `curated` event (the verdicts take minutes on
a CPU); `rate` sends the user's thumbs; `curator stats` reads the files in the data dir, so it needs
no backend.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from a4ps.autonomy.commands import ask

SILENCE_PING_S = 5.0


def add_commands(subparsers: Any) -> None:
    curate = subparsers.add_parser("curate", help="have ALFRED judge the dialogues not judged yet (golden samples)")
    curate.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the pass (default 1800)")
    curate.set_defaults(func=curate_command)
    rate = subparsers.add_parser("rate", help="rate a finished task: up is always golden, down never")
    rate.add_argument("task_id")
    rate.add_argument("rating", choices=["up", "down"])
    rate.set_defaults(func=rate_command)
    curator = subparsers.add_parser("curator", help="the Curator's figures: judged, golden, agreement with you")
    curator.add_argument("action", choices=["stats"])
    curator.add_argument("--json", action="store_true", help="one JSON object")
    curator.set_defaults(func=stats_command)


def rate_command(args: argparse.Namespace, settings: Any) -> int:
    reply = ask(settings, "rate_task", task_id=args.task_id, rating=args.rating)
    if reply is None:
        return 1
    if reply["judged"]:
        state = "golden" if reply["golden"] else "not golden"
        change = f" (its golden line was {reply['change']})" if reply["change"] else ""
        print(f"task {reply['task_id']} rated {reply['rating']}: {state}{change}")
    else:
        print(f"task {reply['task_id']} rated {reply['rating']}: applied when ALFRED has judged it")
    return 0


def curate_command(args: argparse.Namespace, settings: Any) -> int:
    from a4ps.client import BackendUnavailable, EventSubscriber

    events = EventSubscriber(settings.zmq.pub_addr)
    try:
        if events.wait_for("state", 10.0) is None:
            print(f"a4ps: no events from {settings.zmq.pub_addr}; is the backend running?", file=sys.stderr)
            return 1
        reply = ask(settings, "curate")
        if reply is None:
            return 1
        pass_id = reply["pass_id"]
        print(f"curation pass {pass_id} asked for; it runs while no task runs or waits …", file=sys.stderr)
        deadline, heard = time.monotonic() + args.timeout, time.monotonic()
        while time.monotonic() < deadline:
            item = events.poll_event(0.5)
            if item is None:
                if time.monotonic() - heard > SILENCE_PING_S:
                    if ask(settings, "ping") is None:
                        return 1
                    heard = time.monotonic()
                continue
            heard = time.monotonic()
            topic, event = item
            if topic == "curated" and event.get("pass_id") == pass_id:
                print(f"{event['judged']} episode(s) judged, {event['golden']} became golden"
                      f"{', ' + str(event['failed']) + ' without a valid verdict' if event['failed'] else ''}"
                      f"{'; stopped by shutdown' if event['stopped'] else ''} "
                      f"(in all: {event['total_judged']} judged, {event['total_golden']} golden)")
                for error in event.get("errors") or []:
                    print(f"  {error}", file=sys.stderr)
                return 0 if not event["stopped"] else 1
        print(f"a4ps: the pass did not end within {args.timeout:g} s (it goes on in the backend)", file=sys.stderr)
        return 1
    except BackendUnavailable as exc:
        print(f"a4ps: the backend stopped answering ({exc})", file=sys.stderr)
        return 1
    finally:
        events.close()


def stats_command(args: argparse.Namespace, settings: Any) -> int:
    from a4ps.curator.golden import FOLDER, GoldenSet
    from a4ps.curator.ledger import CurationLedger
    from a4ps.curator.stats import curation_stats

    data = Path(settings.data_dir)
    stats = curation_stats(CurationLedger(data / "curator"), GoldenSet(data / FOLDER))
    if args.json:
        print(json.dumps(stats, sort_keys=True))
        return 0
    agreement = stats["agreement"]
    rate = f"{agreement['rate']:.0%}" if agreement["rate"] is not None else "n/a"
    print(f"judged {stats['judged']}, golden {stats['golden']}, rated up {stats['rated']['up']} / "
          f"down {stats['rated']['down']}; the judge agrees with you on {agreement['agreed']} of "
          f"{agreement['compared']} rated ({rate})")
    for name, row in sorted(stats["personas"].items()):
        share = f"{row['agreement']:.0%}" if row["agreement"] is not None else "n/a"
        print(f"  {name:8} drove {row['judged']:4} judged, {row['golden']:4} golden, agreement {share} "
              f"({row['agreed']}/{row['compared']})")
    if stats["unjudgeable"]:
        print(f"  {stats['unjudgeable']} episode(s) never got a valid verdict and are no longer asked about")
    if stats["torn_lines"]:
        print(f"  {stats['torn_lines']} torn or unreadable line(s) skipped (an interrupted write)")
    print(f"golden samples: {data / FOLDER}")
    return 0
