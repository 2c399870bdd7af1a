"""Benchmark of the living core: one task on the embedded model through the whole backend.

Wall time is split into model time (inside the provider) and orchestration (graph, events, ZeroMQ,
image saves). The same model calls are then replayed raw with llama_cpp for the generation ratio.
Targets: orchestration <= 3% of wall time; embedded generation >= 0.95x raw tokens/s.
Last line: one JSON object.  Usage: .venv/bin/python bench/bench_core.py [--task TEXT] [--turns N]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from a4ps.backend.app import Backend  # noqa: E402
from a4ps.client import EventSubscriber, Requester, control_token_path  # noqa: E402
from a4ps.config import load_codex, load_settings  # noqa: E402
from a4ps.models.embedded import thread_count  # noqa: E402
from a4ps.models.structured import schema_to_gbnf  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="How can I keep a small herb garden alive on a windowsill?")
    parser.add_argument("--turns", type=int, default=2)
    args = parser.parse_args()
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
    print(json.dumps({
        "status": final["status"], "turns": final["turns"], "model_calls": len(recorder.calls),
        "wall_s": round(wall, 4), "model_s": round(model_s, 4), "orchestration_s": round(orchestration, 4),
        "orchestration_pct": round(100 * orchestration / wall, 3), "tokens": tokens,
        "embedded_tok_s": round(embedded_tps, 2), "raw_tokens": raw_tokens, "raw_tok_s": round(raw_tps, 2),
        "generation_ratio": round(embedded_tps / raw_tps, 4),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
