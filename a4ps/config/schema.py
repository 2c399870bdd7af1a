"""Typed shape of settings.toml and codex.toml; unknown or ill-typed keys are errors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    """Every key must be present and of the right type; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


class EmbeddedModel(_Strict):
    model: str
    model_path: str
    models_dir: str
    use_mmap: bool
    n_ctx: int = Field(ge=256, le=32768)
    n_threads: int = Field(ge=0, le=256)
    seed: int

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from a4ps.models.catalog import CATALOG  # late: the models package imports this module

        if value not in CATALOG:
            raise ValueError(f"unknown embedded model; known: {', '.join(CATALOG)}")
        return value


class OllamaModel(_Strict):
    host: str
    keep_alive: str
    embed_model: str
    probe_timeout_s: float = Field(gt=0)
    request_timeout_s: float = Field(gt=0)


class Models(_Strict):
    provider: Literal["auto", "embedded", "ollama"]
    max_tokens: int = Field(ge=16, le=8192)
    json_retries: int = Field(ge=0, le=10)
    repeat_penalty: float = Field(ge=1.0, le=2.0)
    embedded: EmbeddedModel
    ollama: OllamaModel


class Graph(_Strict):
    convergence_threshold: float = Field(ge=0.0, le=1.0)
    max_turns: int = Field(ge=1, le=50)
    dissonance_embedding_weight: float = Field(ge=0.0, le=1.0)
    plan_tokens: int = Field(ge=16, le=4096)
    thesis_tokens: int = Field(ge=16, le=4096)
    antithesis_tokens: int = Field(ge=16, le=4096)
    synthesis_tokens: int = Field(ge=16, le=4096)
    transcript_chars: int = Field(ge=1000)
    program_fixes: int = Field(ge=0, le=3)
    code_fixes: int = Field(ge=0, le=3)
    tools: bool


class Image(_Strict):
    autosave_interval_s: float = Field(gt=0)
    keep_checkpoints: int = Field(ge=1, le=1000)


class Zmq(_Strict):
    pub_addr: str
    rep_addr: str
    max_request_bytes: int = Field(ge=1024)
    allow_remote: bool = False


class Backend(_Strict):
    shutdown_grace_s: float = Field(ge=0)
    recent_tasks: int = Field(ge=1)
    max_task_attempts: int = Field(ge=1, le=100)


class Sandbox(_Strict):
    backend: Literal["auto", "docker", "runsc", "bwrap"]
    timeout_s: float = Field(gt=0)
    memory_mb: int = Field(ge=16)
    cpu_quota: float = Field(gt=0, le=64)
    pids_limit: int = Field(ge=4)
    tmpfs_mb: int = Field(ge=1)
    output_limit_bytes: int = Field(ge=1024)
    docker_image: str


class Forge(_Strict):
    max_retries: int = Field(ge=1, le=20)


class Memory(_Strict):
    embedder: Literal["auto", "minilm", "ollama"]
    index_threshold_rows: int = Field(ge=256)
    nprobes: int = Field(ge=1)
    refine_factor: int = Field(ge=1)
    top_summaries: int = Field(ge=1)
    chunks_per_summary: int = Field(ge=1)
    hybrid: bool


class Autonomy(_Strict):
    """The Motivator (a4ps/autonomy): goals it sets itself when idle, within a budget."""

    enabled: bool
    idle_after_s: float = Field(gt=0)
    max_goals_per_hour: int = Field(ge=0, le=1000)
    inquiry_after: int = Field(ge=1, le=1000)  # high-dissonance tasks within a day that start an inquiry
    # an idle goal may be a reflection on the codex (an inquiry) only this long after the last inquiry ran
    inquiry_cooldown_s: float = Field(ge=0)


class Cadence(_Strict):
    """The philosophical loop (a4ps/cadence): codex amendments the user approves."""

    preview_tasks: int = Field(ge=0, le=20)
    proposal_attempts: int = Field(ge=1, le=10)


class Autopoiesis(_Strict):
    """The strategic loop (a4ps/curator): ALFRED judges finished dialogues; the best become golden samples."""

    enabled: bool  # false: no periodic passes (a `curate` command still runs one)
    curate_interval_s: float = Field(ge=10)
    curation_threshold: float = Field(ge=0.0, le=1.0)  # an unrated episode judged at or above it is golden
    episodes_per_pass: int = Field(ge=1, le=1000)
    # the fine-tune (a4ps/finetune): a job starts when a persona's golden set grew by this many samples
    fine_tune_trigger_size: int = Field(ge=1)
    lora_rank: int = Field(ge=1, le=256)
    train_steps: int = Field(ge=1, le=100000)
    learning_rate: float = Field(gt=0.0, le=1.0)
    # the gate and the swap (a4ps/adapters): held-out samples never trained on; promotion threshold
    holdout_fraction: float = Field(gt=0.0, lt=1.0)
    promotion_win_rate: float = Field(ge=0.0, le=1.0)


class Logging(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(_Strict):
    data_dir: str
    models: Models
    graph: Graph
    image: Image
    zmq: Zmq
    backend: Backend
    sandbox: Sandbox
    forge: Forge
    memory: Memory
    autonomy: Autonomy
    cadence: Cadence
    autopoiesis: Autopoiesis
    logging: Logging


class Persona(_Strict):
    name: str = Field(min_length=1, max_length=40)
    role: str
    system_prompt: str = Field(min_length=1)
    temperature: float = Field(ge=0.0, le=2.0)
    top_p: float = Field(ge=0.0, le=1.0)
    max_tokens: int = Field(ge=16, le=8192)
    models: dict[str, str]

    @field_validator("models")
    @classmethod
    def _both_providers(cls, value: dict[str, str]) -> dict[str, str]:
        missing = {"embedded", "ollama"} - set(value)
        if missing:
            raise ValueError(f"needs a model for {', '.join(sorted(missing))}")
        return value


class Prompts(_Strict):
    society: str
    plan: str
    form: str
    range_quote: str
    thesis: str
    compute: str
    recompute: str
    program_fix: str
    revision: str
    tool_need: str
    second_opinion: str
    compare: str
    antithesis: str
    verdict: str
    results: str
    own_working: str
    own_result: str
    synthesis: str
    final_code: str
    code_checks: str
    code_fix: str
    code_answer: str
    code_block: str
    answer_line: str
    forge: str
    goal: str
    tool_try: str
    curiosity: str
    inquiry: str
    judge: str
    curate: str


class Principle(_Strict):
    id: str
    text: str


# The personas the code addresses by role; their text comes from the codex (one place for the names).
STEWARD, ANALYST, EMPATH = "ALFRED", "BRICK", "ROBIN"


class Codex(_Strict):
    version: int = Field(ge=1)
    persona: list[Persona]
    prompts: Prompts
    principle: list[Principle] = []

    @field_validator("persona")
    @classmethod
    def _core_personas(cls, value: list[Persona]) -> list[Persona]:
        names = [p.name for p in value]
        if len(set(names)) != len(names):
            raise ValueError("persona names must be unique")
        missing = {STEWARD, ANALYST, EMPATH} - set(names)
        if missing:
            raise ValueError(f"missing persona(s): {', '.join(sorted(missing))}")
        return value

    def adopt(self, other: "Codex") -> None:
        """Take `other`'s content in place, so every organ holding this object (or its prompts) reads
        the new codex from its next use: how an approved amendment is applied between tasks."""
        for name in type(self.prompts).model_fields:
            setattr(self.prompts, name, getattr(other.prompts, name))
        self.persona, self.principle, self.version = other.persona, other.principle, other.version

    def persona_named(self, name: str) -> Persona:
        for persona in self.persona:
            if persona.name == name:
                return persona
        raise KeyError(name)
