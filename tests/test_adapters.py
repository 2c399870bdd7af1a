"""The gate before the swap and the cognitive atomic swap (organ 9; a4ps/adapters, a4ps/models/lora.py).

The gate's rules are tested in this process on the real model layer, bus, protos and files, with the
answers and ALFRED's verdicts scripted through the Ollama stand-in (a rule about a win rate is only
testable on verdicts that are known). The swap between tasks, the rollback and the choice surviving a
restart run against a real backend process on the stand-in, whose requests (the blobs, the new tag,
which model each persona's calls named) are the evidence. The per-call LoRA runs on the real embedded
SmolLM2 with a real GGUF LoRA, written here with the `gguf` package (small random A/B matrices on a
few layers' attn_q/attn_v), which llama.cpp loads over the base and which changes the output.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from a4ps.adapters.commands import gate_and_swap, wait_for_swap
from a4ps.adapters.gate import KEPT_ASIDE, PROMOTED
from a4ps.adapters.jobs import GATE, LORA_GGUF, PEFT_CONFIG, PEFT_WEIGHTS, REPORT
from a4ps.adapters.swap import SwapError
from a4ps.backend.compose import build_adapters, build_models
from a4ps.backend.tasks import TaskQueue
from a4ps.config import load_codex, load_settings
from a4ps.config.loader import project_root
from a4ps.config.schema import ANALYST, EMPATH
from a4ps.events import EventBus
from a4ps.graph.voice import Voices
from a4ps.models import ModelError
from a4ps.models.types import Sampling
from a4ps.protos import ProtoManager
from a4ps.protos.proto import ProtoEditError
from tests.support.backend import BackendProcess, wait_for_task
from tests.support.config import free_port, write_config
from tests.support.ollama_standin import OllamaStandIn
from tests.support.society_script import MODELS, SocietyScript

BASE_TEXT = "The base model's answer."
ADAPTER_TEXT = "The fine-tuned answer."
BRICK_BASE = "phi3:mini"  # BRICK's ollama model in the codex


def sample(n: int) -> dict:
    return {"messages": [{"role": "system", "content": "You are BRICK."},
                         {"role": "user", "content": f"Held-out question {n}: what is {n} + {n}?"},
                         {"role": "assistant", "content": f"{n} + {n} = {2 * n}."}]}


def write_lora(path: Path, *, rank: int = 4, spread: float = 0.05, layers=(0, 1, 2), seed: int = 7,
               embd: int = 576, outs=(("attn_q", 576), ("attn_v", 192))) -> Path:
    """A GGUF LoRA for SmolLM2-135M (n_embd 576; q 576 out, v 192 out): A is (rank, in), B is (out, rank)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    for layer in layers:
        for name, out in outs:
            a = rng.normal(0, spread, (rank, embd)).astype(np.float32)
            b = rng.normal(0, spread, (out, rank)).astype(np.float32)
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_a", a)
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def make_job(data_dir: Path, job_id: str, *, persona: str = ANALYST, holdout: int = 3, decision: str | None = None,
             lora: bool = True) -> Path:
    """A finished job's folder as the trainer leaves it (and, with `decision`, as a gate left it)."""
    folder = data_dir / "adapters" / persona / job_id
    folder.mkdir(parents=True)
    if lora:
        write_lora(folder / LORA_GGUF)
    (folder / PEFT_WEIGHTS).write_bytes(b"peft weights of " + job_id.encode())
    (folder / PEFT_CONFIG).write_text(json.dumps({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}))
    (folder / REPORT).write_text(json.dumps({"job_id": job_id, "persona": persona, "steps": 3,
                                             "losses": [2.0, 1.5, 1.2], "finished_at": time.time(),
                                             "holdout": [sample(n) for n in range(1, holdout + 1)]}))
    if decision:
        (folder / GATE).write_text(json.dumps({"decision": decision, "win_rate": 0.25, "samples": []}))
    return folder


def step(adapters) -> None:
    """One turn of the backend's adapters loop, without its wait."""
    adapters.request_gate()
    adapters.step()


class Script:
    """The stand-in's responder: a base model answers BASE_TEXT, a model made with an adapter
    ADAPTER_TEXT; ALFRED's blind verdict comes from `judge(adapter_is_first)` ("1", "2" or "tie")."""

    def __init__(self, judge):
        self.judge, self.verdicts = judge, []

    def __call__(self, model, messages, fmt) -> str:
        if isinstance(fmt, dict) and "better" in fmt.get("properties", {}):
            prompt = messages[-1]["content"]
            verdict = self.judge(prompt.index(ADAPTER_TEXT) < prompt.index(BASE_TEXT))
            self.verdicts.append(verdict)
            return json.dumps({"better": verdict})
        return ADAPTER_TEXT if model.startswith("a4ps-") else BASE_TEXT


class Rig:
    """The adapters' real collaborators in this process, over the stand-in."""

    def __init__(self, tmp_path: Path, host: str, **settings):
        config = write_config(tmp_path / "config", settings={"models.provider": "ollama", "models.ollama.host": host,
                                                             "autopoiesis.promotion_win_rate": 0.55, **settings})
        self.settings = load_settings(config / "settings.toml")
        self.data = tmp_path / "data"
        self.settings.data_dir = str(self.data)
        self.codex = load_codex(config / "codex.toml")
        self.models = build_models(self.settings, self.codex)
        self.protos = ProtoManager.from_codex(self.codex, self.models.provider_name)
        self.bus = EventBus()
        self.events: list = []
        self.bus.subscribe("*", self.events.append)
        self.voices = Voices(self.models, self.protos, self.bus, self.settings.models.max_tokens)
        self.tasks = TaskQueue()
        self.stop = threading.Event()
        self.saves: list[str] = []

    def adapters(self, saved=None):
        return build_adapters(self.settings, self.codex, self.models, self.protos, self.voices, self.tasks, self.bus,
                              self.stop, saved, self.saves.append)

    def published(self, topic: str) -> list[dict]:
        return [e.payload for e in self.events if e.topic == topic]


@pytest.fixture
def rig(tmp_path):
    servers = []

    def make(judge, **settings):
        script = Script(judge)
        server = OllamaStandIn(models=MODELS, responder=script).__enter__()
        servers.append(server)
        made = Rig(tmp_path / f"rig{len(servers)}", server.host, **settings)
        made.script, made.server = script, server
        return made

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def test_a_better_adapter_is_promoted_with_a_full_report_and_swapped_in_between_tasks(rig):
    rig = rig(lambda adapter_first: "1" if adapter_first else "2")  # ALFRED always prefers the adapter
    folder = make_job(rig.data, "job1")
    adapters = rig.adapters()
    step(adapters)  # idle: gates the candidate, then puts it forward
    gate = json.loads((folder / GATE).read_text())
    assert gate["decision"] == PROMOTED and gate["win_rate"] == 1.0 and gate["threshold"] == 0.55
    assert len(gate["samples"]) == 3 and gate["wins"] == 6 and gate["losses"] == 0
    first = gate["samples"][0]
    assert first["task"] == "Held-out question 1: what is 1 + 1?"
    assert first["base_answer"] == BASE_TEXT and first["adapter_answer"] == ADAPTER_TEXT
    assert first["verdicts"] == ["2", "1"], "base first, then adapter first: the adapter won both"
    assert [m["role"] for m in first["prompt"]] == ["system", "user"], "the golden answer is never shown"
    assert rig.published("adapter_gated")[0]["decision"] == PROMOTED
    assert rig.protos.get(ANALYST).model == BRICK_BASE, "nothing changes until the worker is between tasks"
    assert adapters.listing()["personas"][ANALYST]["pending"]["job_id"] == "job1"
    applied = adapters.apply_pending()
    assert [a["topic"] for a in applied] == ["adapter_swapped"]
    brick = rig.protos.get(ANALYST)
    assert brick.adapter == "job1" and brick.model == "a4ps-brick:job1"
    assert rig.protos.get(EMPATH).adapter is None and rig.protos.get(EMPATH).model == "gemma2:2b"
    swapped = rig.published("adapter_swapped")[0]
    assert swapped["persona"] == ANALYST and swapped["adapter"] == "job1" and swapped["previous"] is None
    assert rig.saves == ["adapter swapped"]
    row = adapters.listing()["personas"][ANALYST]["adapters"][0]
    assert row["status"] == "in_use" and row["win_rate"] == 1.0
    step(adapters)
    assert adapters.apply_pending() == [], "a promoted adapter is put forward once"


def test_a_worse_adapter_is_kept_aside_visible_and_promotable_by_hand(rig):
    rig = rig(lambda adapter_first: "2" if adapter_first else "1")  # ALFRED always prefers the base
    folder = make_job(rig.data, "job2")
    adapters = rig.adapters()
    step(adapters)
    gate = json.loads((folder / GATE).read_text())
    assert gate["decision"] == KEPT_ASIDE and gate["win_rate"] == 0.0 and gate["losses"] == 6
    assert adapters.apply_pending() == [] and rig.protos.get(ANALYST).adapter is None
    (rig.data / "adapters" / ANALYST / ".tmp-job9").mkdir()  # a job still training (or killed): never seen
    rows = adapters.listing()["personas"][ANALYST]["adapters"]
    assert [r["job_id"] for r in rows] == ["job2"]
    assert rows[0]["status"] == KEPT_ASIDE and rows[0]["held_out"] == 3
    adapters.promote(ANALYST, "job2")
    adapters.apply_pending()
    assert rig.protos.get(ANALYST).adapter == "job2"
    step(adapters)
    assert adapters.apply_pending() == [], "the .tmp- folder is not gated"
    row = adapters.listing()["personas"][ANALYST]["adapters"][0]
    assert row["status"] == "in_use" and row["by_hand"] is True


@pytest.mark.parametrize("judge, expected", [(lambda adapter_first: "1", 0.5), (lambda adapter_first: "2", 0.5),
                                             (lambda adapter_first: "tie", 0.5),
                                             (lambda adapter_first: "1" if adapter_first else "tie", 0.75)])
def test_position_bias_cancels_and_ties_count_half(rig, judge, expected):
    rig = rig(judge)
    folder = make_job(rig.data, "job3", holdout=2)
    step(rig.adapters())
    gate = json.loads((folder / GATE).read_text())
    assert gate["win_rate"] == expected
    assert gate["decision"] == (PROMOTED if expected >= 0.55 else KEPT_ASIDE)
    assert len(rig.script.verdicts) == 4, "each held-out pair judged once in each order"


def test_the_ollama_tag_is_made_from_the_base_with_the_uploaded_adapter_files(rig):
    rig = rig(lambda adapter_first: "tie")
    folder = make_job(rig.data, "job4", decision=KEPT_ASIDE)
    adapters = rig.adapters()
    rig.server.requests.clear()
    adapters.promote(ANALYST, "job4")
    adapters.apply_pending()
    weights = "sha256:" + hashlib.sha256((folder / PEFT_WEIGHTS).read_bytes()).hexdigest()
    config = "sha256:" + hashlib.sha256((folder / PEFT_CONFIG).read_bytes()).hexdigest()
    assert rig.server.requests == [
        (f"/api/blobs/{weights}", {"bytes": (folder / PEFT_WEIGHTS).stat().st_size, "sha256": weights}),
        (f"/api/blobs/{config}", {"bytes": (folder / PEFT_CONFIG).stat().st_size, "sha256": config}),
        ("/api/create", {"model": "a4ps-brick:job4", "from": BRICK_BASE, "stream": False,
                         "adapters": {PEFT_WEIGHTS: weights, PEFT_CONFIG: config}}),
    ]
    assert rig.server.blobs[weights] == (folder / PEFT_WEIGHTS).read_bytes()
    result = rig.voices.speak(ANALYST, [{"role": "user", "content": "hi"}], task_id="t", node="brick", turn=1,
                              cancel=threading.Event())
    assert result == ADAPTER_TEXT and rig.server.requests[-1][1]["model"] == "a4ps-brick:job4"


def test_rollback_returns_to_the_previous_adapter_then_to_the_base(rig):
    rig = rig(lambda adapter_first: "tie")
    for job in ("jobA", "jobB"):
        make_job(rig.data, job, decision=KEPT_ASIDE)
    adapters = rig.adapters()
    with pytest.raises(SwapError, match="nothing to roll back"):
        adapters.rollback(ANALYST)
    for job in ("jobA", "jobB"):
        adapters.promote(ANALYST, job)
        adapters.apply_pending()
    assert rig.protos.get(ANALYST).adapter == "jobB"
    with pytest.raises(ProtoEditError, match="roll it back"):
        rig.protos.update(ANALYST, {"model": "other:1b"})
    _, target = adapters.rollback(ANALYST)
    assert target == "jobA" and rig.protos.get(ANALYST).adapter == "jobB", "applied between tasks only"
    adapters.apply_pending()
    assert rig.protos.get(ANALYST).adapter == "jobA"
    assert rig.published("adapter_swapped")[-1]["reason"] == "rollback"
    adapters.rollback(ANALYST)
    adapters.apply_pending()
    brick = rig.protos.get(ANALYST)
    assert brick.adapter is None and brick.model == BRICK_BASE
    assert adapters.listing()["personas"][ANALYST]["current"] is None


def test_the_choice_survives_a_restart_through_the_image_state(rig):
    rig = rig(lambda adapter_first: "tie")
    make_job(rig.data, "job5", decision=KEPT_ASIDE)
    adapters = rig.adapters()
    adapters.promote(ANALYST, "job5")
    adapters.apply_pending()
    saved = adapters.export()
    rig.protos = ProtoManager.from_codex(rig.codex, "ollama")  # a restart: protos from the codex
    again = rig.adapters(saved)
    assert rig.protos.get(ANALYST).adapter is None
    assert [a["reason"] for a in again.apply_pending()] == ["restore"]
    assert rig.protos.get(ANALYST).model == "a4ps-brick:job5"
    assert again.listing()["personas"][ANALYST]["current"] == "job5"


def test_a_missing_or_damaged_adapter_is_refused_clearly_and_the_persona_stays(rig):
    rig = rig(lambda adapter_first: "tie")
    adapters = rig.adapters()
    with pytest.raises(SwapError, match="no adapter nojob for BRICK") as missing:
        adapters.promote(ANALYST, "nojob")
    assert missing.value.code == "unknown_adapter"
    folder = make_job(rig.data, "job6", decision=KEPT_ASIDE)
    (folder / REPORT).write_text("{torn")
    with pytest.raises(SwapError, match="not readable JSON") as damaged:
        adapters.promote(ANALYST, "job6")
    assert damaged.value.code == "damaged_adapter"
    folder = make_job(rig.data, "job7", decision=KEPT_ASIDE)
    adapters.promote(ANALYST, "job7")
    (folder / PEFT_WEIGHTS).unlink()  # gone between the request and the swap
    applied = adapters.apply_pending()
    assert applied[0]["topic"] == "adapter_swap_failed" and "adapter file not found" in applied[0]["error"]
    assert rig.protos.get(ANALYST).model == BRICK_BASE and rig.protos.get(ANALYST).adapter is None
    assert adapters.listing()["personas"][ANALYST]["current"] is None
    with pytest.raises(SwapError, match="not been through its gate"):
        make_job(rig.data, "job8")
        adapters.promote(ANALYST, "job8")


def test_finetune_s_gate_step_without_a_backend_gates_here_and_a_backend_swaps_it_in_when_it_starts(rig):
    rig = rig(lambda adapter_first: "1" if adapter_first else "tie")
    rig.settings.zmq.rep_addr = f"tcp://127.0.0.1:{free_port()}"  # no backend there
    folder = make_job(rig.data, "job10")
    out = io.StringIO()
    result = gate_and_swap(rig.settings, ANALYST, "job10", out=out)
    assert result == {"win_rate": 0.75, "decision": PROMOTED, "promoted": True, "swapped": False}
    assert "no backend runs" in out.getvalue() and json.loads((folder / GATE).read_text())["win_rate"] == 0.75
    adapters = rig.adapters()  # a backend starting later
    step(adapters)
    assert [(a["topic"], a["adapter"]) for a in adapters.apply_pending()] == [("adapter_swapped", "job10")]
    make_job(rig.data, "job11", lora=True).joinpath(REPORT).write_text(json.dumps({"holdout": []}))
    failed = gate_and_swap(rig.settings, ANALYST, "job11", out=io.StringIO())
    assert failed["promoted"] is False and "no held-out sample" in failed["gate_error"]


def test_an_embedded_swap_refuses_a_file_that_is_no_gguf_before_anything_changes(tmp_path):
    from a4ps.adapters.swap import AdapterSwap
    from a4ps.adapters.choice import AdapterChoice

    class Embedded:  # the swap only asks the provider's name before it touches a model
        provider_name = "embedded"

    codex = load_codex(write_config(tmp_path / "config") / "codex.toml")
    protos = ProtoManager.from_codex(codex, "embedded")
    folder = make_job(tmp_path, "job9", decision=KEPT_ASIDE, lora=False)
    (folder / LORA_GGUF).write_bytes(b"PK\x03\x04 not a gguf")
    swap = AdapterSwap(tmp_path / "adapters", Embedded(), protos, AdapterChoice(), EventBus(), lambda why: None)
    with pytest.raises(SwapError, match="is not a GGUF file") as refused:
        swap.request(ANALYST, "job9")
    assert refused.value.code == "damaged_adapter" and swap.pending() == {}
    (folder / LORA_GGUF).unlink()
    with pytest.raises(SwapError, match="LoRA adapter file not found"):
        swap.request(ANALYST, "job9")


# --- a real backend on the stand-in ----------------------------------------------------------------
def cli(backend: BackendProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "a4ps", *args], cwd=project_root(), env=backend.env,
                          capture_output=True, text=True, timeout=120)


def _chat_models(server: OllamaStandIn, since: int = 0) -> list[str]:
    return [body["model"] for path, body in server.requests[since:] if path == "/api/chat"]


def _wait_event(events, topic: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == topic:
            return item[1]
    raise TimeoutError(f"no {topic} event in {timeout_s} s")


def test_a_task_running_during_a_swap_ends_on_the_old_model_the_next_uses_the_new_and_it_survives_a_restart(
        tmp_path):
    script = SocietyScript()
    config = write_config(tmp_path / "config", settings={"models.provider": "ollama", "autonomy.enabled": False,
                                                         "autopoiesis.enabled": False, "graph.max_turns": 1})
    data = tmp_path / "data"
    make_job(data, "jobX", decision=KEPT_ASIDE)
    with OllamaStandIn(models=MODELS, responder=script, chunk_delay_s=0.1) as server:
        env = {"OLLAMA_HOST": server.host}
        with BackendProcess(data, config, extra_env=env) as backend:
            events = backend.subscribe()
            first = backend.request("submit_task", text="Should I take a coat?")["task_id"]
            wait_for_task(events, first, {"running"}, 30)
            time.sleep(0.5)  # well into its dialogue
            reply = backend.request("promote_adapter", persona=ANALYST, job_id="jobX")
            assert reply["ok"] and reply["adapter"] == "jobX", reply
            assert wait_for_task(events, first, {"done", "failed"}, 120)["status"] == "done"
            during = _chat_models(server)
            assert BRICK_BASE in during and not any(m.startswith("a4ps-") for m in during), during
            swapped = _wait_event(events, "adapter_swapped", 30)
            assert swapped["swap_id"] == reply["swap_id"] and swapped["model"] == "a4ps-brick:jobx"
            mark = len(server.requests)
            second = backend.request("submit_task", text="And an umbrella?")["task_id"]
            assert wait_for_task(events, second, {"done", "failed"}, 120)["status"] == "done"
            after = _chat_models(server, mark)
            assert "a4ps-brick:jobx" in after and BRICK_BASE not in after, after
            brick = next(p for p in backend.request("get_state")["state"]["protos"] if p["name"] == ANALYST)
            assert brick["adapter"] == "jobX"
            listed = json.loads(cli(backend, "adapters", "--json").stdout)
            assert listed["backend"] is True and listed["personas"][ANALYST]["current"] == "jobX"
            row = listed["personas"][ANALYST]["adapters"][0]
            assert row["status"] == "in_use" and row["by_hand"] is True
            events.close()
        with BackendProcess(data, config, extra_env=env) as backend:
            events = backend.subscribe()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                brick = next(p for p in backend.request("get_state")["state"]["protos"] if p["name"] == ANALYST)
                if brick["adapter"] == "jobX":
                    break
                time.sleep(0.2)
            assert brick["adapter"] == "jobX" and brick["model"] == "a4ps-brick:jobx", "restored from the image"
            refused = backend.request("rollback_adapter", persona=EMPATH)
            assert not refused["ok"] and refused["code"] == "nothing_to_roll_back"
            rolled = cli(backend, "rollback", ANALYST)
            assert rolled.returncode == 0, rolled.stderr
            assert rolled.stdout.startswith("BRICK now speaks with its base model (phi3:mini; was jobX)")
            brick = next(p for p in backend.request("get_state")["state"]["protos"] if p["name"] == ANALYST)
            assert brick["adapter"] is None and brick["model"] == BRICK_BASE
            events.close()
        offline = json.loads(cli(backend, "adapters", "--json").stdout)
        assert offline["backend"] is False, "read from the data dir and the image"
        assert offline["personas"][ANALYST]["current"] is None and offline["personas"][ANALYST]["previous"] is None
        row = offline["personas"][ANALYST]["adapters"][0]
        assert row["status"] == PROMOTED and row["by_hand"] is True and row["decision"] == KEPT_ASIDE


def test_finetune_s_gate_step_with_a_backend_gates_and_swaps_there_and_stops_waiting_when_it_dies(tmp_path):
    """`a4ps finetune`'s last step, with a backend running: the backend gates the job (ALFRED judges
    blind) and swaps the promoted adapter in between tasks; the command follows it through the
    backend's events. Once the backend is gone, a wait ends at the next silent ping, not the timeout."""
    config = write_config(tmp_path / "config", settings={"models.provider": "ollama", "autonomy.enabled": False,
                                                         "autopoiesis.enabled": False,
                                                         "autopoiesis.promotion_win_rate": 0.55})
    data = tmp_path / "data"
    make_job(data, "jobG")  # trained, not gated yet
    script = Script(lambda adapter_first: "1" if adapter_first else "2")  # the adapter's answer wins
    with OllamaStandIn(models=MODELS, responder=script) as server:
        with BackendProcess(data, config, extra_env={"OLLAMA_HOST": server.host}) as backend:
            settings = load_settings(config / "settings.toml")
            settings.data_dir, settings.zmq.pub_addr, settings.zmq.rep_addr = str(data), backend.pub_addr, \
                backend.rep_addr
            out = io.StringIO()
            result = gate_and_swap(settings, ANALYST, "jobG", out=out, timeout_s=120)
            assert result == {"win_rate": 1.0, "decision": PROMOTED, "promoted": True, "swapped": True}, out.getvalue()
            assert "the backend judges jobG" in out.getvalue() and "swap: BRICK now speaks with jobG" in out.getvalue()
            assert script.verdicts and json.loads((data / "adapters" / ANALYST / "jobG" / GATE).read_text())[
                "decision"] == PROMOTED
            brick = next(p for p in backend.request("get_state")["state"]["protos"] if p["name"] == ANALYST)
            assert brick["adapter"] == "jobG"
            backend.proc.kill()
            backend.proc.wait()
            started = time.monotonic()
            assert wait_for_swap(settings, "no-such-swap", 60) is None
            assert time.monotonic() - started < 30, "a dead backend was waited on for the whole timeout"


# --- the real embedded model with a real GGUF LoRA -----------------------------------------------
@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from a4ps.models.embedded import EmbeddedProvider
    from a4ps.models.manager import ModelManager

    config = write_config(tmp_path_factory.mktemp("embedded") / "config", settings={"models.provider": "embedded"})
    settings = load_settings(config / "settings.toml")
    provider = EmbeddedProvider(settings.models.embedded)
    yield ModelManager(provider)
    provider.unload()


def _greedy(models, model: str, text: str = "Name three colours.") -> tuple[str, dict]:
    result = models.chat([{"role": "system", "content": "You are BRICK, an analyst."},
                          {"role": "user", "content": text}], model=model,
                         sampling=Sampling(temperature=0.0, top_p=1.0, max_tokens=24))
    return result.text, result.extra


def test_a_real_gguf_lora_changes_only_the_calls_that_name_its_variant(embedded, tmp_path):
    base, _ = _greedy(embedded, "smollm2-135m-instruct")
    again, extra = _greedy(embedded, "smollm2-135m-instruct")
    assert again == base and extra["reused_prompt_tokens"] > 0, "same adapter: the prefix cache is used"
    seconds = embedded.make_variant("a4ps-brick:lora1", base="smollm2-135m-instruct",
                                    lora_gguf=write_lora(tmp_path / "lora1.gguf", spread=0.2), peft_files=[])
    assert seconds < 10
    tuned, extra = _greedy(embedded, "a4ps-brick:lora1")
    assert tuned != base, "the adapter changes the answer"
    assert extra["reused_prompt_tokens"] == 0, "no KV computed without the adapter is reused under it"
    other, extra = _greedy(embedded, "smollm2-135m-instruct")
    assert other == base and extra["reused_prompt_tokens"] == 0, "the other personas are unaffected"
    assert _greedy(embedded, "a4ps-brick:lora1")[0] == tuned, "switching back and forth is repeatable"


def test_llama_cpp_refusing_an_adapter_is_a_clear_error_and_nothing_is_registered(embedded, tmp_path):
    wrong = write_lora(tmp_path / "wrong.gguf", embd=512)  # shaped for another model
    with pytest.raises(ModelError, match="llama.cpp refused the LoRA adapter"):
        embedded.make_variant("a4ps-brick:wrong", base="x", lora_gguf=wrong, peft_files=[])
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(ModelError, match="llama.cpp refused the LoRA adapter"):
        embedded.make_variant("a4ps-brick:garbage", base="x", lora_gguf=garbage, peft_files=[])
    assert "a4ps-brick:wrong" not in embedded.provider.variants()
