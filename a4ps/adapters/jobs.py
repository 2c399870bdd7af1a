"""A fine-tune job's output as the gate and the swap read it: `<data_dir>/adapters/<PERSONA>/<job_id>/`.

Why a folder per job: the trainer (a4ps/finetune) renames a finished job's folder into place, so a
folder that exists holds a whole adapter: `adapter.gguf` (the GGUF LoRA llama.cpp loads over the base
GGUF), `adapter_model.safetensors` + `adapter_config.json` (the PEFT adapter Ollama takes) and
`report.json` (dataset hash, steps, losses, base model, held-out samples). The gate adds `gate.json`
beside them (written atomically): its answers, verdicts, win rate and decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a4ps.atomicfile import read_json
from a4ps.errors import CodedError

FOLDER = "adapters"
LORA_GGUF = "adapter.gguf"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
REPORT = "report.json"
GATE = "gate.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class JobError(CodedError):
    """A job that is not there, is not whole, or names a persona/job badly; `code` goes into replies."""


@dataclass
class AdapterJob:
    """One finished fine-tune of one persona, and its gate's verdict once it has one."""

    persona: str
    job_id: str
    folder: Path
    report: dict[str, Any]
    gate: dict[str, Any] | None

    @property
    def lora_gguf(self) -> Path:
        return self.folder / LORA_GGUF

    @property
    def peft_files(self) -> list[Path]:
        """What Ollama is given: the weights, and their config when the trainer wrote it."""
        files = [self.folder / PEFT_WEIGHTS]
        return files + [self.folder / PEFT_CONFIG] if (self.folder / PEFT_CONFIG).is_file() else files

    @property
    def created_at(self) -> float:
        value = self.report.get("finished_at") or self.report.get("created_at")
        return float(value) if isinstance(value, (int, float)) else self.folder.stat().st_mtime

    def variant_name(self) -> str:
        """The model name persona calls use for base + this adapter (also a valid Ollama tag)."""
        tag = re.sub(r"[^a-z0-9_.-]", "-", self.job_id.lower())[:80]
        return f"a4ps-{self.persona.lower()}:{tag}"

    def public(self) -> dict[str, Any]:
        gate = self.gate or {}
        return {"persona": self.persona, "job_id": self.job_id, "folder": str(self.folder),
                "steps": self.report.get("steps"), "created_at": self.created_at,
                "gated": self.gate is not None, "win_rate": gate.get("win_rate"), "decision": gate.get("decision"),
                "held_out": len(gate.get("samples") or []) if self.gate is not None else None}


def check_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise JobError("invalid_value", f"{kind} must be letters, digits, '_', '.' or '-' (at most 128)")
    return value


def load_job(root: Path, persona: str, job_id: str) -> AdapterJob:
    """The job's folder and report; JobError says what is missing or damaged."""
    folder = root / check_name("persona", persona) / check_name("job_id", job_id)
    if not folder.is_dir():
        raise JobError("unknown_adapter", f"no adapter {job_id} for {persona} (looked in {folder})")
    try:
        report = read_json(folder / REPORT)
        gate = read_json(folder / GATE)
    except ValueError as exc:
        raise JobError("damaged_adapter", str(exc)) from None
    if not isinstance(report, dict):
        raise JobError("damaged_adapter", f"{folder / REPORT} is missing or not a JSON object")
    return AdapterJob(persona, job_id, folder, report, gate if isinstance(gate, dict) else None)


def scan(root: Path) -> list[AdapterJob]:
    """Every readable job, oldest first (a damaged one is left out here; load_job names its fault)."""
    jobs = []
    for persona_dir in sorted(root.iterdir()) if root.is_dir() else ():
        for folder in sorted(persona_dir.iterdir()) if persona_dir.is_dir() else ():
            if folder.name.startswith(".") or not folder.is_dir():
                continue  # a trainer's folder not yet renamed into place
            try:
                jobs.append(load_job(root, persona_dir.name, folder.name))
            except JobError:
                continue
    return sorted(jobs, key=lambda job: job.created_at)


def held_out(job: AdapterJob) -> list[dict[str, Any]]:
    """The job's held-out golden samples (never trained on). The trainer's report names them by id
    (`holdout`: [{"id", "line"}]) in the dataset file it trained on (`dataset`); they are found by id,
    since the golden file may have grown since. A report may also carry the samples themselves."""
    listed = job.report.get("holdout")
    if not isinstance(listed, list):
        raise JobError("damaged_adapter", f"{job.folder / REPORT} names no held-out samples")
    if not listed:
        raise JobError("no_holdout", f"adapter {job.job_id} of {job.persona} has no held-out sample to judge on")
    if all(isinstance(s, dict) and "messages" in s for s in listed):
        samples = listed
    else:
        from a4ps.finetune.dataset import DatasetError, load_dataset

        wanted = [s.get("id") for s in listed if isinstance(s, dict)]
        try:
            dataset = load_dataset(Path(str(job.report.get("dataset"))))
        except DatasetError as exc:
            raise JobError("no_holdout", f"the held-out samples of {job.job_id} cannot be read: {exc}") from None
        by_id = {sample.id: sample.record() for sample in dataset.samples}
        samples = [by_id[key] for key in wanted if key in by_id]
    usable = [s for s in samples if _prompt_of(s) is not None]
    if not usable:
        raise JobError("no_holdout", f"adapter {job.job_id} of {job.persona} has no held-out sample to judge on")
    return usable


def _prompt_of(sample: Any) -> list[dict[str, str]] | None:
    """The messages before the golden assistant turn: what both models are asked."""
    messages = sample.get("messages") if isinstance(sample, dict) else None
    if not isinstance(messages, list) or not messages:
        return None
    prompt = [m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "user")
              and isinstance(m.get("content"), str)]
    return prompt if any(m["role"] == "user" for m in prompt) else None


def prompt_of(sample: dict[str, Any]) -> list[dict[str, str]]:
    prompt = _prompt_of(sample)
    assert prompt is not None, "held_out returns only samples with a prompt"
    return prompt
