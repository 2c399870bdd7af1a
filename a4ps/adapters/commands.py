"""`a4ps adapters [--json]`, `a4ps adapters promote PERSONA JOB`, `a4ps rollback PERSONA`, and the
gate-and-swap step that `a4ps finetune` runs after training (`gate_and_swap`).

With a backend running, everything goes through it (it owns the model, the protos and the image): a
promotion or rollback is applied between its tasks and the command waits for the `adapter_swapped`
event. Without one, `adapters` reads the job folders and the living image, and `gate_and_swap` gates
in this process; the backend swaps a promoted adapter in when it next starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, TextIO

from a4ps.autonomy.commands import ask

SILENCE_PING_S = 5.0
SWAP_WAIT_S = 600.0  # a swap waits for the running task to end


def add_commands(subparsers: Any) -> None:
    adapters = subparsers.add_parser("adapters", help="the personas' LoRA adapters: status, win rate; promote one")
    adapters.add_argument("action", nargs="?", choices=["list", "promote"], default="list")
    adapters.add_argument("persona", nargs="?")
    adapters.add_argument("job_id", nargs="?")
    adapters.add_argument("--json", action="store_true", help="one JSON object")
    adapters.set_defaults(func=adapters_command)
    rollback = subparsers.add_parser("rollback", help="return a persona to the adapter (or base model) it had before")
    rollback.add_argument("persona")
    rollback.set_defaults(func=rollback_command)


def _backend_answers(settings: Any) -> bool:
    from a4ps.autonomy.commands import requester
    from a4ps.client import BackendUnavailable

    try:
        return bool(requester(settings).request("ping", timeout_s=2.0).get("ok"))
    except BackendUnavailable:
        return False


def _offline_listing(settings: Any) -> dict[str, Any]:
    """The job folders, and the choice as the newest good living image holds it."""
    from a4ps.adapters.choice import AdapterChoice
    from a4ps.adapters.jobs import FOLDER
    from a4ps.adapters.registry import listing
    from a4ps.config import load_codex
    from a4ps.protos import LivingImage

    data = Path(settings.data_dir)
    saved = None
    if (data / "image.key").is_file():
        state, _ = LivingImage(data / "image", data / "image.key").load_latest()
        saved = (state or {}).get("adapters")
    return {"personas": listing(data / FOLDER, AdapterChoice(saved), [p.name for p in load_codex().persona]),
            "gating": None, "backend": False}


def adapters_command(args: argparse.Namespace, settings: Any) -> int:
    if args.action == "promote":
        if not args.persona or not args.job_id:
            print("a4ps adapters promote: give PERSONA and JOB_ID", file=sys.stderr)
            return 2
        reply = ask(settings, "promote_adapter", persona=args.persona, job_id=args.job_id)
        return 1 if reply is None else _await_swap(settings, reply, sys.stdout)
    if _backend_answers(settings):
        reply = ask(settings, "list_adapters")
        if reply is None:
            return 1
        shown = {"personas": reply["personas"], "gating": reply["gating"], "backend": True}
    else:
        shown = _offline_listing(settings)
    if args.json:
        print(json.dumps(shown, sort_keys=True))
        return 0
    for name, row in shown["personas"].items():
        pending = f"; swap to {row['pending']['job_id'] or 'base'} pending" if row.get("pending") else ""
        print(f"{name}: {row['current'] or 'base model'} (before: {row['previous'] or 'base model'}){pending}")
        for job in row["adapters"]:
            rate = f"{job['win_rate']:.2f}" if isinstance(job["win_rate"], (int, float)) else "  – "
            hand = " by hand" if job["by_hand"] else ""
            error = f"  gate failed: {job['gate_error']}" if job.get("gate_error") else ""
            print(f"  {job['job_id']:24} {job['status']:10}{hand} win rate {rate}  steps {job['steps']}{error}")
    if not shown["backend"]:
        print("(no backend runs: read from the data dir)")
    return 0


def rollback_command(args: argparse.Namespace, settings: Any) -> int:
    reply = ask(settings, "rollback_adapter", persona=args.persona)
    return 1 if reply is None else _await_swap(settings, reply, sys.stdout)


def _await_swap(settings: Any, reply: dict, out: TextIO, timeout_s: float = SWAP_WAIT_S) -> int:
    """Wait for the swap's event (it happens between the backend's tasks) and say what it did."""
    result = wait_for_swap(settings, reply["swap_id"], timeout_s)
    if result is None:
        print(f"a4ps: swap {reply['swap_id']} not applied within {timeout_s:g} s (it still is, between tasks)",
              file=sys.stderr)
        return 1
    if result[0] == "adapter_swap_failed":
        print(f"a4ps: {result[1]['persona']} stays on {result[1]['current'] or 'its base model'}: "
              f"{result[1]['error']}", file=sys.stderr)
        return 1
    event = result[1]
    out.write(f"{event['persona']} now speaks with {event['adapter'] or 'its base model'} ({event['model']}; "
              f"was {event['previous'] or 'its base model'})\n")
    return 0


class BackendSilent(Exception):
    """The backend stopped answering while a command waited for its events."""


def _events(settings: Any, events: Any, timeout_s: float) -> Iterator[tuple[str, dict]]:
    """The backend's events for up to timeout_s; after SILENCE_PING_S without one, a ping checks that
    it still runs (BackendSilent if not), so a dead backend is not waited on for the whole timeout."""
    deadline, heard = time.monotonic() + timeout_s, time.monotonic()
    while time.monotonic() < deadline:
        item = events.poll_event(0.5)
        if item is None:
            if time.monotonic() - heard > SILENCE_PING_S:
                if ask(settings, "ping") is None:
                    raise BackendSilent()
                heard = time.monotonic()
            continue
        heard = time.monotonic()
        yield item


def wait_for_swap(settings: Any, swap_id: str, timeout_s: float) -> tuple[str, dict] | None:
    """(topic, event) of the swap's outcome, or None when it did not come in time."""
    from a4ps.client import EventSubscriber

    events = EventSubscriber(settings.zmq.pub_addr)
    try:
        events.wait_for("state", 10.0)
        for topic, event in _events(settings, events, timeout_s):
            if topic in ("adapter_swapped", "adapter_swap_failed") and event.get("swap_id") == swap_id:
                return topic, event
        return None
    except BackendSilent:
        return None
    finally:
        events.close()


def gate_and_swap(settings: Any, persona: str, job_id: str, out: TextIO = sys.stderr,
                  timeout_s: float = 3600.0) -> dict[str, Any]:
    """After training: the gate, and the swap when promoted and a backend runs. Returns the fields
    `a4ps finetune` adds to its last line: win_rate, promoted, decision, swapped (and gate_error)."""
    if _backend_answers(settings):
        return _gate_in_backend(settings, persona, job_id, out, timeout_s)
    return _gate_here(settings, persona, job_id, out)


def _result(record: dict[str, Any] | None, swapped: bool, error: str | None = None) -> dict[str, Any]:
    record = record or {}
    return {"win_rate": record.get("win_rate"), "decision": record.get("decision"),
            "promoted": record.get("decision") == "promoted", "swapped": swapped,
            **({"gate_error": error} if error else {})}


def _gate_here(settings: Any, persona: str, job_id: str, out: TextIO) -> dict[str, Any]:
    from a4ps.adapters.gate import AdapterGate
    from a4ps.adapters.jobs import FOLDER, JobError, load_job
    from a4ps.adapters.registry import JobBusy, job_lock
    from a4ps.backend.compose import build_models
    from a4ps.config import load_codex
    from a4ps.config.schema import STEWARD
    from a4ps.events import EventBus
    from a4ps.graph.voice import Voices
    from a4ps.models import ModelError
    from a4ps.protos import ProtoManager

    codex = load_codex()
    try:
        models = build_models(settings, codex)
        protos = ProtoManager.for_models(codex, models)
        voices = Voices(models, protos, EventBus(), settings.models.max_tokens, settings.models.repeat_penalty)
        judge = f"{models.provider_name}:{protos.get(STEWARD).model}"
        gate = AdapterGate(settings.autopoiesis, models, voices, codex, settings.models.max_tokens,
                           settings.models.repeat_penalty, lambda: judge)
        job = load_job(Path(settings.data_dir) / FOLDER, persona, job_id)
        print(f"gate: {job_id} against {protos.base_model(persona)} on held-out samples, judged by ALFRED …",
              file=out)
        with job_lock(job.folder):
            record = gate.run(job, protos.base_model(persona), threading.Event())
    except (JobError, ModelError, JobBusy, OSError) as exc:
        print(f"gate of {job_id} failed: {exc}", file=out)
        return _result(None, False, str(exc))
    finally:
        if "models" in locals():
            models.unload()
    print(f"gate: win rate {record['win_rate']:.2f} (threshold {record['threshold']:.2f}): {record['decision']}; "
          "no backend runs: a promoted adapter is swapped in when it starts", file=out)
    return _result(record, False)


def _known_outcome(settings: Any, persona: str, job_id: str) -> tuple[dict | None, dict | None]:
    """(gate record, final result) as far as the backend got before we listened (its loop is quick)."""
    reply = ask(settings, "list_adapters")
    row = next((r for r in ((reply or {}).get("personas", {}).get(persona) or {}).get("adapters", [])
                if r["job_id"] == job_id), None)
    if row is None or not row["gated"]:
        return None, None
    record = {"win_rate": row["win_rate"], "decision": row["decision"]}
    if row["decision"] != "promoted" or row["status"] == "in_use":
        return record, _result(record, row["status"] == "in_use")
    return record, None


def _gate_in_backend(settings: Any, persona: str, job_id: str, out: TextIO, timeout_s: float) -> dict[str, Any]:
    """The backend gates (when its society is idle) and, when promoted, swaps between its tasks."""
    from a4ps.client import EventSubscriber

    events = EventSubscriber(settings.zmq.pub_addr)
    try:
        events.wait_for("state", 10.0)
        if ask(settings, "gate_adapters") is None:
            return _result(None, False, "the backend refused gate_adapters")
        print(f"gate: the backend judges {job_id} when no task runs or waits …", file=out)
        record, known = _known_outcome(settings, persona, job_id)
        if known is not None:
            return known
        for topic, event in _events(settings, events, timeout_s):
            if topic == "adapter_gated" and event.get("job_id") == job_id:
                if event.get("error"):
                    return _result(None, False, event["error"])
                record = event
                print(f"gate: win rate {event['win_rate']:.2f} (threshold {event['threshold']:.2f}): "
                      f"{event['decision']}", file=out)
                if event["decision"] != "promoted":
                    return _result(record, False)
            elif topic == "adapter_swapped" and event.get("adapter") == job_id and event.get("persona") == persona:
                print(f"swap: {persona} now speaks with {job_id} ({event['model']})", file=out)
                return _result(record, True)
            elif topic == "adapter_swap_failed" and event.get("adapter") == job_id:
                return _result(record, False, event["error"])
        return _result(record, False, f"no outcome within {timeout_s:g} s")
    except BackendSilent:
        return _result(record, False, "the backend stopped answering")
    finally:
        events.close()
