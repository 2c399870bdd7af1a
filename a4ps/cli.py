"""Command line: `python -m a4ps serve | ask | ui | ...`. Config errors exit 2 with one line."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from a4ps.config import ConfigError, Settings, load_codex, load_settings

# Organs that add their own sub-commands (each module has add_commands(subparsers)).
ORGAN_COMMANDS = ("a4ps.forge.commands", "a4ps.memory.commands", "a4ps.models.commands", "a4ps.autonomy.commands",
                  "a4ps.cadence.commands", "a4ps.curator.commands", "a4ps.finetune.commands",
                  "a4ps.adapters.commands")

EXIT_CONFIG = 2
EXIT_BACKEND_LOST = 3  # the backend stopped answering while a task was followed
SILENCE_PING_S = 5.0  # without events for this long, ask the backend whether it is still there


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from a4ps.backend.app import Backend
    from a4ps.logsetup import configure_logging
    from a4ps.models import ModelError
    from a4ps.protos import ImageError

    configure_logging(settings.logging.level, settings.data_dir, "backend")
    codex = load_codex()
    try:
        backend = Backend(settings, codex)
        backend.start()
    except (ModelError, OSError, ImageError) as exc:
        print(f"a4ps serve: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, _frame: object) -> None:
        backend.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    backend.wait()
    backend.shutdown()
    return 0


class _DialoguePrinter:
    """Prints a task's streamed dialogue: a header per utterance, then its tokens as they come."""

    def __init__(self, task_id: str, write: Callable[[str], None]):
        self.task_id = task_id
        self._write = write
        self._current: tuple | None = None

    def on_event(self, topic: str, event: dict) -> dict | None:
        """Returns the final task event when the task has ended."""
        if event.get("task_id") != self.task_id:
            return None
        if topic == "token":
            key = (event.get("persona"), event.get("node"), event.get("turn"))
            if key != self._current:
                self._current = key
                self._write(f"\n[{event.get('persona')} · {event.get('node')} · turn {event.get('turn')}] ")
            self._write(str(event.get("text", "")))
        elif topic == "utterance":
            self._current = None
            self._write("\n")
        elif topic == "dissonance":
            self._write(f"  (dissonance {float(event.get('value', 0)):.2f})\n")
        elif topic == "task" and event.get("status") in ("done", "failed", "cancelled"):
            return event
        return None


def _connect(settings: Settings, timeout_s: float):
    """REQ + a live SUB (its join snapshot received), or an error line for the user."""
    from a4ps.client import BackendUnavailable, EventSubscriber, Requester, control_token_path

    requester = Requester(settings.zmq.rep_addr, timeout_s=timeout_s, token_file=control_token_path(settings.data_dir))
    try:
        requester.request("ping")
    except BackendUnavailable:
        return None, None, f"no backend answers at {settings.zmq.rep_addr}; start it with `python -m a4ps serve`"
    events = EventSubscriber(settings.zmq.pub_addr)
    if events.wait_for("state", timeout_s) is None:
        return None, None, f"no events from {settings.zmq.pub_addr}"
    return requester, events, ""


def _ask_once(requester, events, text: str, out) -> int:
    """Submit one task and stream its dialogue; the exit code says how it ended. A backend that
    stops answering (killed, hung) ends the wait with EXIT_BACKEND_LOST instead of waiting forever."""
    from a4ps.client import BackendUnavailable

    try:
        return _follow_task(requester, events, text, out)
    except BackendUnavailable as exc:
        print(f"\na4ps: the backend stopped answering ({exc}); the task's outcome is unknown", file=sys.stderr)
        return EXIT_BACKEND_LOST


def _follow_task(requester, events, text: str, out) -> int:
    reply = requester.request("submit_task", text=text)
    if not reply.get("ok"):
        print(f"a4ps: {reply.get('error')}", file=sys.stderr)
        return 1
    task_id = reply["task_id"]
    out.write(f"task {task_id} queued (position {reply['position']})\n")
    printer = _DialoguePrinter(task_id, lambda piece: (out.write(piece), out.flush()))
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    final, heard = None, time.monotonic()
    try:
        while final is None and not interrupted.is_set():
            item = events.poll_event(0.2)
            if item is not None:
                heard = time.monotonic()
                final = printer.on_event(*item)
            elif time.monotonic() - heard > SILENCE_PING_S:
                requester.request("ping")  # raises BackendUnavailable after the requester's timeout
                heard = time.monotonic()
    finally:
        signal.signal(signal.SIGINT, previous)
    if final is None:
        requester.request("cancel_task", task_id=task_id)
        print("\na4ps: interrupted; task cancelled", file=sys.stderr)
        return 130
    if final["status"] != "done":
        print(f"\na4ps: task {final['status']}: {final.get('error')}", file=sys.stderr)
        return 1
    out.write(f"\n=== Synthesis (ALFRED, {final.get('turns')} turn(s)) ===\n{final.get('result')}\n")
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    requester, events, error = _connect(settings, args.connect_timeout)
    if error:
        print(f"a4ps ask: {error}", file=sys.stderr)
        return 1
    return _ask_once(requester, events, args.task, sys.stdout)


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    """The headless client: type tasks at a prompt, watch the personas answer; empty line or EOF quits."""
    requester, events, error = _connect(settings, args.connect_timeout)
    if error:
        print(f"a4ps chat: {error}", file=sys.stderr)
        return 1
    print("BAT OS headless client. Type a task and press Enter (empty line or Ctrl-D quits).")
    while True:
        try:
            text = input("\ntask> ").strip()
        except EOFError:
            return 0
        if not text:
            return 0
        events.drain(100_000)  # leave earlier events behind
        if _ask_once(requester, events, text, sys.stdout) == EXIT_BACKEND_LOST:
            return EXIT_BACKEND_LOST


def cmd_wait_ready(args: argparse.Namespace, settings: Settings) -> int:
    """For run.sh: wait until the backend answers a ping; a clear message and exit 1 if it never
    does (or its process `--pid` ends), so no window opens onto nothing."""
    from a4ps.client import BackendUnavailable, Requester

    requester = Requester(settings.zmq.rep_addr)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            if requester.request("ping", timeout_s=0.5).get("ok"):
                return 0
        except BackendUnavailable:
            pass
        if args.pid and not _process_alive(args.pid):
            print("a4ps: the backend exited during start-up (see its output above)", file=sys.stderr)
            return 1
        if time.monotonic() >= deadline:
            log_file = Path(settings.data_dir) / "logs" / "backend.log"
            print(f"a4ps: no backend answered at {settings.zmq.rep_addr} within {args.timeout:g} s; "
                  f"not going on without it (its log: {log_file})", file=sys.stderr)
            return 1
        time.sleep(0.2)


def _process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, ended but not yet reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    except (PermissionError, OSError, IndexError):
        return True
    return state not in ("Z", "X")


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    from a4ps.ui.app import run_ui

    return run_ui(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m a4ps", description="BAT OS: a society of LLM personas.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the backend (ZeroMQ on 127.0.0.1)")
    serve.set_defaults(func=cmd_serve)
    ask = sub.add_parser("ask", help="submit a task to a running backend and stream the dialogue")
    ask.add_argument("task")
    ask.add_argument("--connect-timeout", type=float, default=10.0)
    ask.set_defaults(func=cmd_ask)
    chat = sub.add_parser("chat", help="interactive headless client for a running backend")
    chat.add_argument("--connect-timeout", type=float, default=10.0)
    chat.set_defaults(func=cmd_chat)
    ready = sub.add_parser("wait-ready", help="wait until the backend answers (used by run.sh)")
    ready.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    ready.add_argument("--pid", type=int, default=0, help="the backend's process: stop waiting if it ends")
    ready.set_defaults(func=cmd_wait_ready)
    ui = sub.add_parser("ui", help="open the Kivy window on a running backend")
    ui.set_defaults(func=cmd_ui)
    for module_name in ORGAN_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that organ is not part of this build
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "serve":
            load_codex()
    except ConfigError as exc:
        print(f"a4ps: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return args.func(args, settings)
