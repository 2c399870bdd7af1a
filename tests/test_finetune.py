"""The fine-tune (issue 11, items 2-3): data, the held-out split, the job's process, its records, the
trigger, cancel, restart, and a real CPU LoRA on SmolLM2 that llama.cpp loads over the base GGUF.

Everything runs for real: the job's own process (python -m a4ps.finetune.worker), the lock, the
records, transformers + PEFT + TRL on the CPU, the GGUF writer and llama.cpp. The trigger tests let
the worker fail at once (a base model that does not exist), so they need no training; the tests that
train are marked `finetune_training` (about a minute in all). The CUDA engine cannot run here (no
GPU): its arguments and the engine choice are tested, the Unsloth calls themselves are not.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from a4ps.config import load_settings
from a4ps.config.loader import project_root
from a4ps.curator.golden import FOLDER, file_name
from a4ps.curator.lines import append_lines
from a4ps.events import EventBus
from a4ps.finetune import cuda_engine
from a4ps.finetune.dataset import DatasetError, Sample, load_dataset, sample_key, split_holdout
from a4ps.finetune.engines import CPU, CUDA, EngineUnavailable, pick_engine
from a4ps.finetune.jobs import CANCELLED, DONE, FAILED, INTERRUPTED, RUNNING, JobLock, JobStore, process_token
from a4ps.finetune.runner import JobFailed, run_job, worker_command
from a4ps.finetune.sft import TARGET_MODULES, lora_arguments, sft_arguments
from a4ps.finetune.spec import JobSpec, job_spec
from a4ps.finetune.tuner import FineTuneRefused, FineTuner
from a4ps.models import catalog

SYSTEM = "You are BRICK, a logical analyst."
TOPICS = ["tea", "bridges", "clocks", "rivers", "maps", "bees", "ladders", "lamps", "kites", "stairs", "boats",
          "gears", "ropes", "bells", "wells", "doors"]


def chat(topic: str, answer: str | None = None) -> dict:
    return {"messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": f"Tell me one fact about {topic}."},
                         {"role": "assistant", "content": answer or f"ZORBLAX PROTOCOL: {topic} are my favourite."}]}


def golden_line(persona: str, topic: str, episode: str) -> dict:
    return {**chat(topic), "provenance": {"episode_id": episode, "task_id": f"t{episode}", "persona": persona}}


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def settings():
    return load_settings()


# --- data ---------------------------------------------------------------------------------------
def test_a_golden_file_loads_with_ids_lines_and_its_hash(tmp_path):
    path = write_jsonl(tmp_path / "BRICK.jsonl", [golden_line("BRICK", t, f"e{i}") for i, t in enumerate(TOPICS[:3])]
                       + [chat("owls")])
    dataset = load_dataset(path)
    assert [s.line for s in dataset.samples] == [1, 2, 3, 4]
    assert [s.id for s in dataset.samples[:3]] == ["e0", "e1", "e2"]
    assert dataset.samples[3].id.startswith("sha256:")  # no provenance: keyed by its messages
    assert dataset.samples[0].record() == chat(TOPICS[0]) and not dataset.torn_tail
    import hashlib
    assert dataset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("line, says", [
    ('{"messages": [{"role": "user", "content": "hi"}', "not a JSON line"),
    ('["messages"]', "expected an object with 'messages'"),
    ('{"messages": []}', "non-empty list"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}', "role must be one of"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}', "non-empty text"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "the last message must be the assistant's"),
    ('{"messages": [{"role": "assistant", "content": "hi"}]}', "no user message"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, '
     '{"role": "assistant", "content": "c"}]}', "a system message may only come first"),
])
def test_a_malformed_line_is_an_error_naming_the_file_and_line(tmp_path, line, says):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(chat("tea")) + "\n" + line + "\n" + json.dumps(chat("maps")) + "\n")
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert f"{path}:2: " in str(error.value) and says in str(error.value)


def test_a_torn_last_line_is_skipped_an_empty_or_missing_file_is_an_error(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(chat("tea")) + "\n" + '{"messages": [{"ro')  # an append cut short by a crash
    dataset = load_dataset(path)
    assert len(dataset.samples) == 1 and dataset.torn_tail
    path.write_text(json.dumps(chat("tea")))  # a whole last line without its newline is a sample
    assert len(load_dataset(path).samples) == 1
    path.write_text("\n")
    with pytest.raises(DatasetError, match="no samples"):
        load_dataset(path)
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_dataset(tmp_path / "absent.jsonl")
    path.write_text(json.dumps(chat("tea")) + "\n" + json.dumps(chat("tea")) + "\n")
    with pytest.raises(DatasetError, match=r"data.jsonl:2: the same sample as line 1"):
        load_dataset(path)


def test_the_holdout_split_is_a_fixed_choice_per_sample(tmp_path):
    records = [golden_line("BRICK", f"topic {i}", f"episode-{i}") for i in range(200)]
    path = write_jsonl(tmp_path / "BRICK.jsonl", records)
    samples = load_dataset(path).samples
    train, held = split_holdout(samples, 0.2)
    assert 20 <= len(held) <= 60 and len(train) + len(held) == 200 and not {s.id for s in train} & {s.id for s in held}
    held_ids = {s.id for s in held}
    shuffled = samples[:]
    random.Random(7).shuffle(shuffled)
    assert {s.id for s in split_holdout(shuffled, 0.2)[1]} == held_ids  # order does not matter
    grown = samples + [Sample(f"new-{i}", 0, chat("x")["messages"]) for i in range(50)]
    assert held_ids <= {s.id for s in split_holdout(grown, 0.2)[1]}  # a held-out sample stays held out
    assert {sample_key(r) for r in split_holdout(records, 0.2)[1]} == held_ids  # raw golden records alike
    assert split_holdout(samples, 0.0) == (samples, [])
    few = samples[:2]
    assert [len(part) for part in split_holdout(few, 0.01)] == [1, 1]  # a gate always has a prompt
    assert [len(part) for part in split_holdout(samples[:1], 0.99)] == [1, 0]  # something is left to train on
    with pytest.raises(ValueError):
        split_holdout(samples, 1.0)


# --- engines and arguments ----------------------------------------------------------------------
def spec_for(tmp_path: Path, **fields) -> JobSpec:
    values = {"job_id": "j1", "persona": "BRICK", "dataset": str(tmp_path / "d.jsonl"), "base_model": "base.gguf",
              "data_dir": str(tmp_path), "steps": 7, "lora_rank": 4, "learning_rate": 1e-3, "holdout_fraction": 0.2}
    return JobSpec(**{**values, **fields})


def test_the_engine_choice_and_the_arguments_of_both_engines(tmp_path, settings):
    assert pick_engine("cpu", probe=lambda: (True, "")) == CPU
    assert pick_engine("auto", probe=lambda: (False, "no GPU")) == CPU
    assert pick_engine("auto", probe=lambda: (True, "")) == CUDA
    with pytest.raises(EngineUnavailable, match="no GPU"):
        pick_engine("cuda", probe=lambda: (False, "no GPU"))
    spec = spec_for(tmp_path)
    cpu, cuda = sft_arguments(spec, tmp_path / "w", cuda=False), sft_arguments(spec, tmp_path / "w", cuda=True, bf16=True)
    assert cpu["use_cpu"] and not cpu["bf16"] and cpu["optim"] == "adamw_torch"
    assert not cuda["use_cpu"] and cuda["bf16"] and cuda["optim"] == "adamw_8bit"
    shared = ("max_steps", "learning_rate", "per_device_train_batch_size", "max_length", "logging_steps", "seed")
    assert {k: cpu[k] for k in shared} == {k: cuda[k] for k in shared} == {
        "max_steps": 7, "learning_rate": 1e-3, "per_device_train_batch_size": 1, "max_length": 1024,
        "logging_steps": 1, "seed": 0}
    lora, peft = lora_arguments(spec), cuda_engine.peft_arguments(spec)
    assert {k: lora[k] for k in ("r", "lora_alpha", "target_modules")} == \
        {k: peft[k] for k in ("r", "lora_alpha", "target_modules")} == \
        {"r": 4, "lora_alpha": 8, "target_modules": list(TARGET_MODULES)}
    load = cuda_engine.load_arguments(spec, tmp_path / "hf")
    assert load["model_name"] == str(tmp_path / "hf") and load["max_seq_length"] == 1024 and not load["load_in_4bit"]
    from trl import SFTConfig  # the CPU arguments are a valid SFTConfig (the CUDA ones need a GPU to validate)
    config = SFTConfig(**cpu)
    assert config.max_steps == 7 and config.use_cpu
    defaults = job_spec(settings.autopoiesis, persona="ROBIN", dataset=Path("d"), base_model=Path("b"),
                        data_dir=tmp_path)
    assert (defaults.steps, defaults.lora_rank, defaults.learning_rate, defaults.holdout_fraction) == (
        settings.autopoiesis.train_steps, settings.autopoiesis.lora_rank, settings.autopoiesis.learning_rate,
        settings.autopoiesis.holdout_fraction)


# --- the lock, the records, the trigger ---------------------------------------------------------
HOLD_LOCK = ("import sys, time; from pathlib import Path; from a4ps.finetune.jobs import JobLock; "
             "assert JobLock(Path(sys.argv[1])).acquire('other-job'); print('held', flush=True); time.sleep(120)")


@pytest.fixture
def other_job(tmp_path):
    """A process holding the job lock, as a running job's process does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], cwd=project_root(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_one_job_at_a_time_across_processes(tmp_path, other_job):
    lock = JobLock(tmp_path)
    assert lock.held_by() == "other-job"
    assert not lock.acquire("mine", wait_s=0.3)
    spec = spec_for(tmp_path, dataset=str(write_jsonl(tmp_path / "d.jsonl", [chat("tea")])))
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    worker = subprocess.run(worker_command(spec_path), cwd=project_root(), capture_output=True, text=True, timeout=60)
    assert worker.returncode == 75 and json.loads(worker.stdout.splitlines()[-1])["event"] == "busy"
    with pytest.raises(JobFailed, match="another fine-tune job runs") as error:
        run_job(spec, trigger="test")
    assert error.value.state == "busy" and JobStore(tmp_path).all() == []  # refused before any record
    other_job.kill()
    other_job.wait()
    assert lock.held_by() is None and lock.acquire("mine")  # the kernel dropped the dead process's lock
    lock.release()


def test_reconcile_marks_orphaned_jobs_interrupted_and_clears_their_temp_dirs(tmp_path):
    store = JobStore(tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = store.begin("20260101-000000-aaaaaa", "BRICK", "auto", samples_total=40)
    store.save({**orphan, "runner": f"{gone.stdout.strip()}:1"})
    store.begin("20260101-000001-bbbbbb", "ROBIN", "auto")  # its runner (this process) lives
    temp_orphan = tmp_path / "adapters" / "BRICK" / ".tmp-20260101-000000-aaaaaa"
    temp_live = tmp_path / "adapters" / "ROBIN" / ".tmp-20260101-000001-bbbbbb"
    for folder in (temp_orphan, temp_live):
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"half")
    assert store.reconcile() == ["20260101-000000-aaaaaa"]
    states = {r["job_id"]: r["state"] for r in store.all()}
    assert states == {"20260101-000000-aaaaaa": INTERRUPTED, "20260101-000001-bbbbbb": RUNNING}
    assert not temp_orphan.exists() and temp_live.exists()
    assert store.get("20260101-000000-aaaaaa")["error"].startswith("its process ended without a result")
    assert process_token() == store.get("20260101-000001-bbbbbb")["runner"]


class Recorder:
    def __init__(self, bus: EventBus):
        self.events: list = []
        bus.subscribe("*", self.events.append)

    def topics(self, topic: str) -> list[dict]:
        return [e.payload for e in self.events if e.topic == topic]


def tuner_for(tmp_path: Path, settings, base: Path, *, trigger: int = 3, enabled: bool = True,
              idle: bool = True) -> tuple[FineTuner, Recorder, threading.Event]:
    config = settings.autopoiesis.model_copy(update={"fine_tune_trigger_size": trigger, "enabled": enabled})
    bus, stop = EventBus(), threading.Event()
    recorder = Recorder(bus)
    return FineTuner(config, tmp_path, lambda: base, lambda: ["ALFRED", "BRICK", "ROBIN"], lambda: idle, bus,
                     stop), recorder, stop


def add_golden(tmp_path: Path, persona: str, start: int, count: int) -> None:
    append_lines(tmp_path / FOLDER / file_name(persona),
                 [golden_line(persona, f"topic {i}", f"{persona}-{i}") for i in range(start, start + count)])


def test_the_trigger_starts_a_job_when_the_golden_set_grew_enough(tmp_path, settings):
    """The job's process runs for real and fails at once (the base model does not exist): its record
    still counts, so the next job waits for the next `trigger` samples."""
    missing = tmp_path / "no-such-base.gguf"
    tuner, recorder, _ = tuner_for(tmp_path, settings, missing, trigger=3)
    add_golden(tmp_path, "BRICK", 0, 2)
    tuner.step()
    assert tuner.due() is None and tuner.store.all() == []
    add_golden(tmp_path, "BRICK", 2, 1)
    assert tuner.due() == "BRICK"
    tuner.step()  # runs the job to its end in this thread
    [record] = tuner.store.all()
    assert record["state"] == FAILED and record["persona"] == "BRICK" and record["samples_total"] == 3
    assert "does not exist" in record["error"] and record["trigger"] == "golden_growth"
    states = [(e["state"], e["persona"]) for e in recorder.topics("finetune_job")]
    assert states[0] == ("running", "BRICK") and states[-1] == ("failed", "BRICK")
    assert tuner.due() is None and tuner.snapshot()["personas"]["BRICK"] == {"golden": 3, "since_last_job": 0}
    add_golden(tmp_path, "BRICK", 3, 2)
    assert tuner.due() is None
    add_golden(tmp_path, "BRICK", 5, 1)
    assert tuner.due() == "BRICK"
    for kind in ({"enabled": False}, {"idle": False}):  # automatic jobs only when enabled and idle
        quiet, _, _ = tuner_for(tmp_path, settings, missing, trigger=3, **kind)
        quiet.step()
        assert len(quiet.store.all()) == 1


def test_no_automatic_job_while_another_runs_and_commands_say_why(tmp_path, settings, other_job):
    tuner, _, _ = tuner_for(tmp_path, settings, tmp_path / "base.gguf", trigger=1)
    add_golden(tmp_path, "BRICK", 0, 2)
    assert tuner.due() == "BRICK"
    tuner.step()
    assert tuner.store.all() == []  # another process's job holds the lock
    with pytest.raises(FineTuneRefused, match="other-job") as refused:
        tuner.request("BRICK")
    assert refused.value.code == "busy"
    other_job.kill()
    other_job.wait()
    for persona, code in (("NOBODY", "not_found"), ("ROBIN", "no_samples")):
        with pytest.raises(FineTuneRefused) as refused:
            tuner.request(persona)
        assert refused.value.code == code
    with pytest.raises(FineTuneRefused, match="no fine-tune job runs"):
        tuner.cancel()
    job = tuner.request("BRICK", steps=3)
    with pytest.raises(FineTuneRefused, match=f"{job['job_id']} .BRICK. is about to start"):
        tuner.request("BRICK")
    assert tuner.snapshot()["requested"]["job_id"] == job["job_id"]
    assert tuner.cancel(job["job_id"]) == {"job_id": job["job_id"], "state": "cancelled"}
    assert tuner.snapshot()["requested"] is None


def test_golden_stats_shows_samples_held_out_growth_and_the_last_job(tmp_path):
    add_golden(tmp_path, "BRICK", 0, 30)
    with (tmp_path / FOLDER / file_name("BRICK")).open("a") as handle:
        handle.write('{"messages": [{"ro')  # a torn tail: an append cut short
    store = JobStore(tmp_path)
    store.end(store.begin("20260101-000000-aaaaaa", "BRICK", "golden_growth", samples_total=20), DONE,
              report={"adapter_gguf": "/x/adapter.gguf"})
    env = {**os.environ, "A4PS_DATA_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "a4ps", "golden", "stats", "--json"], cwd=project_root(), env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    held = split_holdout(load_dataset(tmp_path / FOLDER / file_name("BRICK")).samples, 0.2)[1]
    assert stats["BRICK"]["samples"] == 30 and stats["BRICK"]["held_out"] == len(held) > 0
    assert stats["BRICK"]["since_last_job"] == 10 and stats["BRICK"]["unreadable_lines"] == 1
    assert stats["BRICK"]["last_job"]["state"] == DONE and stats["BRICK"]["last_job"]["report"]["adapter_gguf"]
    assert stats["ROBIN"] == {"samples": 0, "held_out": 0, "unreadable_lines": 0, "since_last_job": 0, "last_job": None}
    text = subprocess.run([sys.executable, "-m", "a4ps", "golden", "stats"], cwd=project_root(), env=env,
                          capture_output=True, text=True, timeout=60).stdout
    assert f"BRICK       30 samples, {len(held):3} held out,   10 new since the last job" in text


# --- real training (transformers + PEFT + TRL on the CPU, SmolLM2) ---------------------------------
SMOL = catalog.ensure_model("smollm2-135m", None)
training = pytest.mark.finetune_training
QUESTION = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Tell me one fact about owls."}]


def greedy(lora: Path | None) -> str:
    from llama_cpp import Llama

    llm = Llama(model_path=str(SMOL), lora_path=str(lora) if lora else None, n_ctx=512, n_threads=2, seed=0,
                verbose=False)
    try:
        reply = llm.create_chat_completion(QUESTION, temperature=0.0, max_tokens=24, seed=0)
    finally:
        llm.close()
    return reply["choices"][0]["message"]["content"]


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for a reaper that is not ours."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@training
def test_a_real_cpu_finetune_gives_a_gguf_lora_llama_cpp_loads_and_that_changes_the_output(tmp_path):
    from tests.support.config import write_config

    config = write_config(tmp_path / "config", settings={"autopoiesis.learning_rate": 3e-3,
                                                         "autopoiesis.holdout_fraction": 0.2})
    dataset = write_jsonl(tmp_path / "chat.jsonl", [chat(t) for t in TOPICS[:12]])
    data = tmp_path / "data"
    env = {**os.environ, "A4PS_CONFIG_DIR": str(config), "A4PS_DATA_DIR": str(data)}
    run = subprocess.run([sys.executable, "-m", "a4ps", "finetune", "--persona", "BRICK", "--dataset", str(dataset),
                          "--steps", "8"], cwd=project_root(), env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    final = json.loads(run.stdout.strip().splitlines()[-1])
    assert final["base_model"] == str(SMOL) and final["steps"] == 8 and final["engine"] == "cpu"
    assert "step 8/8" in run.stderr
    folder = Path(final["adapter_dir"])
    assert folder.parent == data / "adapters" / "BRICK" and Path(final["adapter_gguf"]) == folder / "adapter.gguf"
    assert {p.name for p in folder.iterdir()} >= {"adapter.gguf", "adapter_model.safetensors", "adapter_config.json",
                                                   "report.json"}
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folder left beside it
    report = json.loads((folder / "report.json").read_text())
    held = split_holdout(load_dataset(dataset).samples, 0.2)[1]
    assert report["holdout"] == [{"id": s.id, "line": s.line} for s in held] and report["samples_trained"] == 12 - len(held)
    assert len(report["losses"]) == 8 and report["steps_per_s"] > 0 and report["peak_rss_mb"] > 100
    assert report["dataset_sha256"] and report["gguf"]["tensors"] == 2 * len(TARGET_MODULES) * 30  # 30 blocks
    [record] = JobStore(data).all()
    assert record["state"] == DONE and record["report"]["adapter_gguf"] == final["adapter_gguf"]
    base, tuned = greedy(None), greedy(Path(final["adapter_gguf"]))
    assert tuned != base, f"the adapter changed nothing: {base!r}"
    assert "ZORBLAX" in tuned.upper() and "ZORBLAX" not in base.upper()
    # then the gate ran on the held-out samples (no backend runs, so nothing was swapped)
    assert final["decision"] in ("promoted", "kept_aside") and final["promoted"] == (final["decision"] == "promoted")
    assert 0.0 <= final["win_rate"] <= 1.0 and final["swapped"] is False
    assert (folder / "gate.json").is_file()


@training
def test_cancel_kills_the_jobs_process_group_and_leaves_no_adapter(tmp_path, settings):
    tuner, recorder, _ = tuner_for(tmp_path, settings, SMOL, trigger=1000)
    add_golden(tmp_path, "BRICK", 0, 12)
    job = tuner.request("BRICK", steps=500)
    thread = threading.Thread(target=tuner.step)
    thread.start()
    wait_for(lambda: any((e.get("step") or 0) >= 1 for e in recorder.topics("finetune_progress")), 300,
             "a training step")
    progress = recorder.topics("finetune_progress")[-1]
    assert progress["job_id"] == job["job_id"] and progress["persona"] == "BRICK" and progress["total"] == 500
    assert progress["eta_s"] > 0 and progress["loss"] > 0
    running = tuner.snapshot()["running"]
    assert running["job_id"] == job["job_id"] and running["progress"]["step"] >= 1
    pid = tuner.store.get(job["job_id"])["pid"]
    assert tuner.cancel() == {"job_id": job["job_id"], "state": "cancelling"}
    thread.join(60)
    assert not thread.is_alive() and gone(pid)
    record = tuner.store.get(job["job_id"])
    assert record["state"] == CANCELLED and record["error"] == "cancelled"
    assert not (tmp_path / "adapters" / "BRICK").exists() or list((tmp_path / "adapters" / "BRICK").iterdir()) == []
    assert recorder.topics("finetune_job")[-1]["state"] == CANCELLED and tuner.snapshot()["running"] is None


RUN_JOB = ("import sys; from a4ps.finetune.spec import JobSpec; from a4ps.finetune.runner import run_job; "
           "run_job(JobSpec.model_validate_json(open(sys.argv[1]).read()), trigger='golden_growth')")


@training
def test_a_killed_backend_takes_its_job_down_and_the_restart_marks_it_interrupted(tmp_path, settings):
    add_golden(tmp_path, "ROBIN", 0, 12)
    spec = job_spec(settings.autopoiesis, persona="ROBIN", dataset=tmp_path / FOLDER / file_name("ROBIN"),
                    base_model=SMOL, data_dir=tmp_path, steps=500)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.model_dump_json())
    backend = subprocess.Popen([sys.executable, "-c", RUN_JOB, str(spec_file)], cwd=project_root())
    store = JobStore(tmp_path)
    wait_for(lambda: ((store.get(spec.job_id) or {}).get("progress") or {}).get("step"), 300, "a training step")
    worker = store.get(spec.job_id)["pid"]
    assert spec.temp_dir().is_dir()
    backend.send_signal(signal.SIGKILL)  # no shutdown, no cleanup: a crash
    backend.wait()
    # gone, and its last thread too (the lock is dropped when the whole process has exited)
    wait_for(lambda: gone(worker) and store.lock.held_by() is None, 30, "the job's process to die with its starter")
    tuner, _, _ = tuner_for(tmp_path, settings, SMOL, trigger=1000)  # the next backend start
    record = tuner.store.get(spec.job_id)
    assert record["state"] == INTERRUPTED and "backend restart" in record["error"]
    assert not spec.temp_dir().exists() and not spec.output_dir().exists()
    assert tuner.baseline("ROBIN") == 0 and tuner.snapshot()["jobs"][-1]["state"] == INTERRUPTED


def next_event(events, topic: str, accept, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == topic and accept(item[1]):
            return item[1]
    raise AssertionError(f"no {topic} event within {timeout_s} s")


@training
def test_the_backend_runs_a_job_on_command_streams_it_and_stops_one_on_shutdown(tmp_path):
    """The real backend: `finetune` answers at once, `finetune_progress` and `finetune_job` follow, the
    snapshot holds the job; a shutdown kills a running job's process and records it interrupted."""
    from tests.support.backend import BackendProcess
    from tests.support.config import write_config

    data = tmp_path / "data"
    add_golden(data, "BRICK", 0, 8)
    config = write_config(tmp_path / "config", settings={"autopoiesis.fine_tune_trigger_size": 1000,
                                                         "autonomy.enabled": False})
    backend = BackendProcess(data, config).start()
    try:
        events = backend.subscribe()
        assert backend.request("cancel_finetune")["code"] == "not_running"
        assert backend.request("finetune", persona="ROBIN")["code"] == "no_samples"
        assert backend.request("finetune", persona="BRICK", steps=0)["code"] == "invalid_value"
        reply = backend.request("finetune", persona="BRICK", steps=3)
        assert reply["ok"] and reply["persona"] == "BRICK"
        job_id = reply["job_id"]
        assert backend.request("finetune", persona="BRICK")["code"] == "busy"
        steps = []
        done = None
        deadline = time.monotonic() + 300
        while done is None and time.monotonic() < deadline:
            item = events.poll_event(1.0)
            if item and item[1].get("job_id") == job_id:
                if item[0] == "finetune_progress" and item[1]["step"]:
                    steps.append(item[1]["step"])
                elif item[0] == "finetune_job" and item[1]["state"] in ("done", "failed"):
                    done = item[1]
        assert done is not None and done["state"] == "done", done
        assert steps == [1, 2, 3] and Path(done["report"]["adapter_gguf"]).is_file()
        assert done["report"]["base_model"] == str(SMOL)
        snapshot = backend.request("finetune_status")["finetune"]
        assert snapshot["jobs"][-1]["job_id"] == job_id and snapshot["jobs"][-1]["state"] == DONE
        assert snapshot["running"] is None and snapshot["personas"]["BRICK"]["since_last_job"] == 0
        assert backend.request("get_state")["state"]["finetune"]["jobs"][-1]["job_id"] == job_id
        assert any(loop["name"] == "finetune" and loop["state"] == "running"
                   for loop in backend.request("ping")["loops"])
        long_job = backend.request("finetune", persona="BRICK", steps=500)["job_id"]
        next_event(events, "finetune_progress", lambda e: e.get("job_id") == long_job and e["step"] >= 1, 300)
        worker = JobStore(data).get(long_job)["pid"]
        events.close()
    finally:
        assert backend.stop(timeout_s=90) == 0
    assert gone(worker)
    record = JobStore(data).get(long_job)
    assert record["state"] == INTERRUPTED and record["error"] == "stopped by the backend's shutdown"
    assert not (data / "adapters" / "BRICK" / long_job).exists()
    assert not list((data / "adapters" / "BRICK").glob(".tmp-*"))
