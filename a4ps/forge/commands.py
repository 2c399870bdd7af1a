"""CLI: `forge "spec"`, `tools`, `tool NAME '{json}'`, `sandbox run FILE.py`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from a4ps.config import Settings, load_codex


def _workshop(settings: Settings):
    from a4ps.backend.compose import build_forge, build_models
    from a4ps.events import EventBus
    from a4ps.protos import ProtoManager

    codex = load_codex()
    models = build_models(settings, codex)
    forge = build_forge(settings, codex, models, ProtoManager.for_models(codex, models), EventBus())
    forge.registry.load()
    return forge


def cmd_forge(args: argparse.Namespace, settings: Settings) -> int:
    from a4ps.logsetup import configure_logging

    configure_logging("WARNING")
    forge = _workshop(settings)
    print(f"forging: {forge.describe()} …", file=sys.stderr)
    outcome = forge.forge(args.spec, on_token=(lambda t: (sys.stderr.write(t), sys.stderr.flush())) if args.verbose else None)
    print(file=sys.stderr)
    for attempt in outcome.attempts:
        status = "ok" if not attempt.get("error") else attempt["error"][:300]
        repairs = f" [{'; '.join(attempt['repairs'])}]" if attempt.get("repairs") else ""
        print(f"attempt {attempt['attempt']}: {attempt.get('name', '?')}: {status}{repairs}")
    if not outcome.ok:
        print(f"a4ps forge: {outcome.error}", file=sys.stderr)
        return 1
    tool = outcome.tool
    print(f"name: {tool.name}\nversion: {tool.version}\nsignature: {tool.signature}\n"
          f"path: {forge.registry.files_of(tool.name)}")
    print("validation: " + json.dumps(tool.validation))
    return 0


def cmd_tools(args: argparse.Namespace, settings: Settings) -> int:
    from a4ps.backend.compose import build_registry

    registry = build_registry(settings)
    tools = registry.load()
    if not tools:
        print(f"no tools yet in {registry.directory}")
        return 0
    for tool in tools:
        print(f"{tool.status:8} {tool.signature}  v{tool.version} — {tool.docstring.splitlines()[0][:80]}")
    return 0


def cmd_tool(args: argparse.Namespace, settings: Settings) -> int:
    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        print(f"a4ps tool: arguments are not JSON: {exc}", file=sys.stderr)
        return 2
    from a4ps.backend.compose import build_runner

    runner = build_runner(settings)
    runner.registry.load()
    outcome = runner.call(args.name, arguments)
    print(json.dumps({"ok": outcome.ok, "value": outcome.value, "error": outcome.error, "output": outcome.output,
                      "backend": outcome.execution.get("backend"), "wall_ms": outcome.execution.get("wall_ms")},
                     default=str))
    return 0 if outcome.ok else 1


def cmd_sandbox_run(args: argparse.Namespace, settings: Settings) -> int:
    from a4ps.backend.compose import build_executor
    from a4ps.sandbox import SandboxUnavailable

    try:
        source = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"a4ps sandbox run: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        result = build_executor(settings).run_python(source, timeout_s=args.timeout)
    except SandboxUnavailable as exc:
        print(f"a4ps sandbox run: {exc}", file=sys.stderr)
        return 1
    data = result.to_dict()
    print(json.dumps({"backend": data["backend"], "exit_code": data["exit_code"], "killed": data["killed"],
                      "killed_reason": data["kill_reason"], "stdout": data["stdout"], "stderr": data["stderr"],
                      "wall_ms": round(data["wall_ms"], 1)}))
    return 0 if result.ok else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    forge = sub.add_parser("forge", help="have BRICK write a tool for a spec; tested in the sandbox")
    forge.add_argument("spec")
    forge.add_argument("--verbose", action="store_true", help="stream the code as it is written")
    forge.set_defaults(func=cmd_forge)
    tools = sub.add_parser("tools", help="list the registered tools and their status")
    tools.set_defaults(func=cmd_tools)
    tool = sub.add_parser("tool", help="call a registered tool in the sandbox")
    tool.add_argument("name")
    tool.add_argument("arguments", nargs="?", default="{}", help="JSON object of keyword arguments")
    tool.set_defaults(func=cmd_tool)
    sandbox = sub.add_parser("sandbox", help="the secure sandbox")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    run = sandbox_sub.add_parser("run", help="run a Python file in the configured sandbox; prints JSON")
    run.add_argument("file")
    run.add_argument("--timeout", type=float, default=None)
    run.set_defaults(func=cmd_sandbox_run)
