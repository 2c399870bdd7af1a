"""Benchmark of the living core: one task on the embedded model through the whole backend.

Wall time is split into model time (inside the provider) and orchestration (graph, events, ZeroMQ,
image saves). The same model calls are then replayed raw with llama_cpp for the generation ratio.
Then Stop latency: from the moment a stop is asked to the moment the call returns, for the embedded
model while it reads a long prompt (prefill) and while it writes, for a sandbox run of each backend
available, and for a whole task through the backend (cancel_task to the `cancelled` event), stopped at
its first token, inside a constrained decision and while a prompt is read; and the
backend's restart-to-ready time after a SIGKILL mid-task (ping answered; model warm).
Targets: orchestration <= 3% of wall time; embedded generation >= 0.95x raw tokens/s; Stop <= 1 s.
Last line: one JSON object.
Usage: .venv/bin/python bench/bench_core.py [--task TEXT] [--turns N] [--stop-repeats N] [--skip-task]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from a4ps.backend.app import Backend  # noqa: E402
from a4ps.client import BackendUnavailable, EventSubscriber, Requester, control_token_path  # noqa: E402
from a4ps.config import load_codex, load_settings  # noqa: E402
from a4ps.config.schema import STEWARD  # noqa: E402
from a4ps.models import ModelManager  # noqa: E402
from a4ps.models.embedded import EmbeddedProvider, thread_count  # noqa: E402
from a4ps.models.structured import schema_to_gbnf  # noqa: E402
from a4ps.models.types import ModelCancelled, Sampling  # noqa: E402
from a4ps.sandbox import SecureCodeExecutor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder:
    """Wraps the provider's chat to time every model call and keep its exact inputs."""

    def __init__(self, provider):
        self.provider, self.calls = provider, []
        self._chat = provider.chat
        provider.chat = self.chat

    def chat(self, model, messages, schema, sampling, on_token):
        started = time.perf_counter()
        result = self._chat(model, messages, schema, sampling, on_token)
        self.calls.append({"messages": messages, "schema": schema, "sampling": sampling,
                           "tokens": result.completion_tokens, "seconds": time.perf_counter() - started})
        return result


def run_backend_task(task: str, turns: int, data_dir: str) -> tuple[float, Recorder, dict]:
    os.environ["OLLAMA_HOST"] = f"http://127.0.0.1:{free_port()}"  # the embedded path is what we measure
    settings = load_settings()
    settings.data_dir = data_dir
    settings.models.provider = "embedded"
    settings.graph.max_turns = turns
    settings.zmq.pub_addr = f"tcp://127.0.0.1:{free_port()}"
    settings.zmq.rep_addr = f"tcp://127.0.0.1:{free_port()}"
    backend = Backend(settings, load_codex())
    recorder = Recorder(backend.models.provider)
    backend.models.provider.load()
    backend.start()
    events = EventSubscriber(settings.zmq.pub_addr)
    events.wait_for("state", 10)
    requester = Requester(settings.zmq.rep_addr, token_file=control_token_path(settings.data_dir))
    started = time.perf_counter()
    task_id = requester.request("submit_task", text=task)["task_id"]
    final = None
    while final is None:
        item = events.poll_event(1.0)
        if item and item[0] == "task" and item[1]["task_id"] == task_id and item[1]["status"] in ("done", "failed"):
            final = item[1]
    wall = time.perf_counter() - started
    requester.close()
    events.close()
    backend.request_stop("benchmark done")
    backend.shutdown()
    return wall, recorder, final


def replay_raw(calls: list[dict], settings) -> tuple[int, float]:
    """The same prompts, grammars and sampling straight into llama_cpp.Llama."""
    from llama_cpp import Llama, LlamaGrammar

    from a4ps.models.embedded import resolve_model_path

    config = settings.models.embedded
    llm = Llama(model_path=str(resolve_model_path(config)), use_mmap=config.use_mmap,
                n_ctx=config.n_ctx, n_threads=thread_count(config.n_threads),
                n_threads_batch=thread_count(config.n_threads), seed=config.seed, verbose=False)
    grammars: dict[str, LlamaGrammar] = {}
    tokens, seconds = 0, 0.0
    for call in calls:
        key = json.dumps(call["schema"], sort_keys=True)
        if call["schema"] and key not in grammars:
            grammars[key] = LlamaGrammar.from_string(schema_to_gbnf(call["schema"]), verbose=False)
        sampling = call["sampling"]
        started = time.perf_counter()
        for chunk in llm.create_chat_completion(messages=call["messages"], stream=True,
                                                grammar=grammars.get(key), temperature=sampling.temperature,
                                                top_p=sampling.top_p, max_tokens=sampling.max_tokens,
                                                repeat_penalty=sampling.repeat_penalty):
            if chunk["choices"][0]["delta"].get("content"):
                tokens += 1
        seconds += time.perf_counter() - started
    llm.close()
    return tokens, seconds


# --- Stop latency -------------------------------------------------------------------------------------

def _stop_call(call, stop: threading.Event, ready: threading.Event, after_s: float) -> dict:
    """Run call() on a thread; once `ready` is set (or after_s passed), wait after_s more, set `stop`
    and time how long the call takes to return. Returns the latency, what the call ended with, and
    whether `ready` was set when the stop came."""
    ended: dict = {}

    def run() -> None:
        try:
            call()
            ended["how"] = "returned"
        except ModelCancelled:
            ended["how"] = "cancelled"
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            ended["how"] = f"{type(exc).__name__}: {exc}"
        ended["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(120)
    time.sleep(after_s)
    was_ready = ready.is_set()
    stopped = time.monotonic()
    stop.set()
    thread.join(120)
    return {"latency_s": ended["at"] - stopped if "at" in ended else None, "how": ended.get("how", "still running"),
            "ready": was_ready}


def stop_embedded(settings, repeats: int) -> dict:
    """The embedded model (the configured default) stopped while reading a long prompt and while writing."""
    provider = EmbeddedProvider(settings.models.embedded)
    manager = ModelManager(provider)
    provider.load()
    figures: dict[str, list] = {"prefill": [], "generation": []}
    try:
        for _ in range(repeats):
            # prefill: a fresh prompt of ~1,500 tokens (nothing of it cached) read for tens of seconds
            stop, started, tokens = threading.Event(), threading.Event(), []
            prompt = f"[{secrets.token_hex(8)}] Summarise these notes:\n" + "\n".join(
                f"Note {i}: the river rose {i % 7} cm overnight near mill {i % 13}." for i in range(120))
            messages = [{"role": "user", "content": prompt}]

            def prefill() -> None:
                started.set()
                manager.chat(messages, model="m", on_token=tokens.append,
                             sampling=Sampling(0.3, 0.9, 64, should_stop=stop.is_set))

            result = _stop_call(prefill, stop, started, 1.0)
            result["during_prefill"] = not tokens  # no token had come: the stop hit the prompt reading
            figures["prefill"].append(result)
            # generation: the stop comes after the fifth streamed token
            stop, fifth, tokens = threading.Event(), threading.Event(), []

            def on_token(piece: str) -> None:
                tokens.append(piece)
                if len(tokens) >= 5:
                    fifth.set()

            def generate() -> None:
                manager.chat([{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
                             model="m", on_token=on_token, sampling=Sampling(0.7, 0.9, 400, should_stop=stop.is_set))

            result = _stop_call(generate, stop, fifth, 0.0)
            result["tokens_before_stop"] = 5
            result["tokens_after_stop"] = len(tokens) - 5
            figures["generation"].append(result)
    finally:
        provider.unload()
    return figures


SLEEPING_GUEST = "import time\nprint('up', flush=True)\ntime.sleep(120)\n"


def stop_sandbox(settings, repeats: int) -> dict:
    """A sandbox run (a guest asleep for 2 minutes) stopped ~1.5 s in, on each backend available here."""
    figures: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="a4ps-bench-sbx-") as work:
        probe = SecureCodeExecutor(settings.sandbox, Path(work) / "probe")
        for name, reason in probe.availability().items():
            if reason is not None:
                print(f"sandbox {name:6}     : unavailable ({reason[:100]})")
                continue
            executor = SecureCodeExecutor(settings.sandbox.model_copy(update={"backend": name}), Path(work) / name)
            executor.select_backend()
            figures[name] = []
            for _ in range(repeats):
                stop, began, out = threading.Event(), threading.Event(), {}

                def run() -> None:
                    began.set()
                    out["result"] = executor.run_python(SLEEPING_GUEST, timeout_s=120, cancel=stop)

                measured = _stop_call(run, stop, began, 1.5)
                measured["how"] = out["result"].kill_reason if "result" in out else measured["how"]
                measured["guest_ran"] = "result" in out and out["result"].stdout == "up\n"
                figures[name].append(measured)
    return figures


# --- the backend as a process: Stop of a task, restart after SIGKILL ---------------------------------

class ServeProcess:
    """`python -m a4ps serve` on its own data dir and ports, with the embedded model."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.pub, self.rep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        self.env = {**os.environ, "A4PS_DATA_DIR": str(data_dir), "A4PS_PUB_ADDR": self.pub,
                    "A4PS_REP_ADDR": self.rep, "OLLAMA_HOST": f"http://127.0.0.1:{free_port()}"}
        self.log = data_dir.parent / f"{data_dir.name}-serve.log"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> float:
        """Start it; returns the seconds until it answered ping."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log.write_bytes(b"")
        self.started_at = started = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "a4ps", "serve"], cwd=ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        requester = Requester(self.rep, timeout_s=0.5)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"backend exited with {self.proc.returncode}:\n{self.output()[-2000:]}")
                try:
                    if requester.request("ping", timeout_s=0.5).get("ok"):
                        return time.monotonic() - started
                except BackendUnavailable:  # not up yet
                    time.sleep(0.02)
                if time.monotonic() - started > 300:
                    raise RuntimeError("backend did not answer ping in 300 s")
        finally:
            requester.close()

    def seconds_to_log(self, text: str, timeout_s: float) -> float | None:
        """Seconds from the start until `text` appears in the log (polled every 20 ms); None if it never does."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output():
                return time.monotonic() - self.started_at
            time.sleep(0.02)
        return None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def requester(self) -> Requester:
        return Requester(self.rep, token_file=control_token_path(self.data_dir))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.kill()


def _wait_event(events: EventSubscriber, task_id: str, topic: str, statuses: set[str] | None,
                timeout_s: float) -> dict | None:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == topic and item[1].get("task_id") == task_id \
                and (statuses is None or item[1].get("status") in statuses):
            return item[1]
    return None


def _wait_call(events: EventSubscriber, persona: str, constrained: bool, timeout_s: float) -> bool:
    """Wait for the end of a model call of `persona` (prose, or a constrained decision)."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == "model_call" and item[1].get("persona") == persona \
                and bool(item[1].get("constrained")) == constrained:
            return True
    return False


# Where in a task the Stop lands (the plan is ALFRED's prose, then his constrained reading of the
# answer's form, then BRICK reads his instruction before his first token):
#   first_token - at the plan's first streamed token (generation);
#   decision    - 2 s into the form decision, a grammar-constrained JSON call that streams nothing (its
#                 short prompt read, it is writing under the grammar);
#   prefill     - 0.3 s after that decision, while BRICK's prompt is read (no token yet).
STOP_MOMENTS = ("first_token", "decision", "prefill")


def _stop_task(events: EventSubscriber, req: Requester, task: str, moment: str) -> dict:
    """Submit the task, stop it at `moment`; seconds from cancel_task to the task's final event."""
    task_id = req.request("submit_task", text=task)["task_id"]
    if _wait_event(events, task_id, "token", None, 300) is None:
        raise RuntimeError("the task streamed no token in 300 s")
    if moment in ("decision", "prefill"):
        lead = STEWARD
        if not _wait_call(events, lead, False, 300):
            raise RuntimeError("the plan did not end in 300 s")
        if moment == "prefill" and not _wait_call(events, lead, True, 300):
            raise RuntimeError("the form decision did not end in 300 s")
        delay_end, ended = time.monotonic() + (2.0 if moment == "decision" else 0.3), 0
        while (left := delay_end - time.monotonic()) > 0:  # did the call end before the stop came?
            item = events.poll_event(left)
            ended += bool(item and item[0] == "model_call")
        if ended:
            moment += " (the call had ended: a later one was stopped)"
    stopped = time.monotonic()
    req.request("cancel_task", task_id=task_id)
    final = _wait_event(events, task_id, "task", {"cancelled", "done", "failed"}, 60)
    return {"latency_s": time.monotonic() - stopped if final else None,
            "how": final["status"] if final else "no answer in 60 s", "landed": moment}


def stop_task_and_restart(task: str, repeats: int) -> dict:
    """Tasks stopped at each of STOP_MOMENTS, `repeats` times (cancel_task to the `cancelled` event);
    then a task is SIGKILLed mid-run and the backend restarted: seconds to ping, and to the model warm."""
    figures: dict = {"stops": {moment: [] for moment in STOP_MOMENTS}}
    with tempfile.TemporaryDirectory(prefix="a4ps-bench-serve-") as root:
        serve = ServeProcess(Path(root) / "data")
        try:
            figures["cold_start_ping_s"] = serve.start()
            events = EventSubscriber(serve.pub)
            events.wait_for("state", 10)
            req = serve.requester()
            try:
                for _ in range(repeats):
                    for moment in STOP_MOMENTS:
                        figures["stops"][moment].append(_stop_task(events, req, task, moment))
                second = req.request("submit_task", text=task)["task_id"]
                if _wait_event(events, second, "token", None, 300) is None:  # running, mid-answer
                    raise RuntimeError("the second task streamed no token in 300 s")
            finally:
                req.close()
            events.close()
            serve.kill()
            figures["restart_ping_s"] = serve.start()
            figures["restart_model_ready_s"] = serve.seconds_to_log("model ready", 300)
        finally:
            serve.stop()
    return figures


def _summary(values: list[float | None]) -> dict:
    clean = [v for v in values if v is not None]
    if not clean:
        return {"median_s": None, "max_s": None, "n": 0}
    return {"median_s": round(statistics.median(clean), 3), "max_s": round(max(clean), 3), "n": len(clean)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="How can I keep a small herb garden alive on a windowsill?")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--stop-repeats", type=int, default=3)
    parser.add_argument("--skip-task", action="store_true", help="only the Stop and restart figures")
    args = parser.parse_args()
    figures: dict = {}
    if not args.skip_task:
        with tempfile.TemporaryDirectory(prefix="a4ps-bench-") as data_dir:
            wall, recorder, final = run_backend_task(args.task, args.turns, data_dir)
        model_s = sum(c["seconds"] for c in recorder.calls)
        tokens = sum(c["tokens"] for c in recorder.calls)
        orchestration = wall - model_s
        raw_tokens, raw_s = replay_raw(recorder.calls, load_settings())
        embedded_tps, raw_tps = tokens / model_s, raw_tokens / raw_s
        print(f"task status        : {final['status']} after {final['turns']} turn(s), {len(recorder.calls)} model calls")
        print(f"wall time          : {wall:8.3f} s")
        print(f"model time         : {model_s:8.3f} s  ({tokens} tokens, {embedded_tps:.1f} tok/s)")
        print(f"orchestration      : {orchestration:8.3f} s  ({100 * orchestration / wall:.2f}% of wall; target <= 3%)")
        print(f"raw llama_cpp      : {raw_s:8.3f} s  ({raw_tokens} tokens, {raw_tps:.1f} tok/s)")
        print(f"generation ratio   : {embedded_tps / raw_tps:.3f}x raw (target >= 0.95x)")
        figures.update({
            "status": final["status"], "turns": final["turns"], "model_calls": len(recorder.calls),
            "wall_s": round(wall, 4), "model_s": round(model_s, 4), "orchestration_s": round(orchestration, 4),
            "orchestration_pct": round(100 * orchestration / wall, 3), "tokens": tokens,
            "embedded_tok_s": round(embedded_tps, 2), "raw_tokens": raw_tokens, "raw_tok_s": round(raw_tps, 2),
            "generation_ratio": round(embedded_tps / raw_tps, 4),
        })

    settings = load_settings()
    embedded = stop_embedded(settings, args.stop_repeats)
    for phase, runs in embedded.items():
        summary = _summary([r["latency_s"] for r in runs])
        hows = sorted({r["how"] for r in runs})
        extra = ""
        if phase == "prefill":
            extra = f", stop hit the prompt reading in {sum(r['during_prefill'] for r in runs)}/{len(runs)}"
        else:
            extra = f", tokens after the stop: {[r['tokens_after_stop'] for r in runs]}"
        print(f"Stop, {phase:10}   : median {summary['median_s']} s, max {summary['max_s']} s "
              f"({settings.models.embedded.model}; ended {', '.join(hows)}{extra}; target <= 1 s)")
        figures[f"stop_{phase}"] = {**summary, "ended": hows}
    sandbox = stop_sandbox(settings, args.stop_repeats)
    for name, runs in sandbox.items():
        summary = _summary([r["latency_s"] for r in runs])
        hows = sorted({str(r["how"]) for r in runs})
        print(f"Stop, sandbox {name:6}: median {summary['median_s']} s, max {summary['max_s']} s "
              f"(kill reason {', '.join(hows)}; guest was running in {sum(r['guest_ran'] for r in runs)}/{len(runs)})")
        figures[f"stop_sandbox_{name}"] = {**summary, "ended": hows}
    served = stop_task_and_restart(args.task, args.stop_repeats)
    for moment, runs in served.pop("stops").items():
        summary = _summary([r["latency_s"] for r in runs])
        hows = sorted({r["how"] for r in runs})
        missed = sum(r["landed"] != moment for r in runs)
        print(f"Stop, task {moment:11}: median {summary['median_s']} s, max {summary['max_s']} s from cancel_task "
              f"to the final event (ended {', '.join(hows)}; {len(runs) - missed}/{len(runs)} landed there; "
              f"target <= 1 s)")
        figures[f"stop_task_{moment}"] = {**summary, "ended": hows, "landed": len(runs) - missed}
    print(f"cold start         : {served['cold_start_ping_s']:.2f} s to the first ping answer")
    ready = served.get("restart_model_ready_s")
    print(f"restart after KILL : {served['restart_ping_s']:.2f} s to the first ping answer, "
          f"{'%.2f s' % ready if ready is not None else 'n/a'} to the model warm ('model ready')")
    figures.update({key: (round(value, 3) if isinstance(value, float) else value)
                    for key, value in served.items()})
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
