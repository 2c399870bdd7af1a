"""Typed shape of settings.toml and codex.toml; unknown or ill-typed keys are errors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)


class EmbeddedModel(_Strict):
    model_path: str = ""
    n_ctx: int = Field(2048, ge=256, le=32768)
    n_threads: int = Field(0, ge=0, le=256)
    seed: int = 1234


class OllamaModel(_Strict):
    host: str = ""
    keep_alive: str = "5m"
    embed_model: str = "nomic-embed-text"
    probe_timeout_s: float = Field(1.5, gt=0)
    request_timeout_s: float = Field(300.0, gt=0)


class Models(_Strict):
    provider: Literal["auto", "embedded", "ollama"] = "auto"
    max_tokens: int = Field(512, ge=16, le=8192)
    json_retries: int = Field(2, ge=0, le=10)
    repeat_penalty: float = Field(1.15, ge=1.0, le=2.0)
    embedded: EmbeddedModel = EmbeddedModel()
    ollama: OllamaModel = OllamaModel()


class Graph(_Strict):
    convergence_threshold: float = Field(0.4, ge=0.0, le=1.0)
    max_turns: int = Field(3, ge=1, le=50)


class Image(_Strict):
    autosave_interval_s: float = Field(120.0, gt=0)
    keep_checkpoints: int = Field(5, ge=1, le=1000)


class Zmq(_Strict):
    pub_addr: str = "tcp://127.0.0.1:5556"
    rep_addr: str = "tcp://127.0.0.1:5555"
    max_request_bytes: int = Field(1048576, ge=1024)


class Backend(_Strict):
    shutdown_grace_s: float = Field(5.0, ge=0)
    recent_tasks: int = Field(50, ge=1)


class Sandbox(_Strict):
    backend: Literal["auto", "docker", "runsc", "bwrap"] = "auto"
    timeout_s: float = Field(10.0, gt=0)
    memory_mb: int = Field(256, ge=16)
    cpu_quota: float = Field(0.5, gt=0, le=64)
    pids_limit: int = Field(64, ge=4)
    tmpfs_mb: int = Field(64, ge=1)
    output_limit_bytes: int = Field(1048576, ge=1024)
    docker_image: str = "a4ps-sandbox:latest"


class Forge(_Strict):
    max_retries: int = Field(3, ge=1, le=20)


class Memory(_Strict):
    embedder: Literal["auto", "minilm", "ollama"] = "auto"
    index_threshold_rows: int = Field(50000, ge=256)
    nprobes: int = Field(24, ge=1)
    refine_factor: int = Field(10, ge=1)
    top_summaries: int = Field(3, ge=1)
    chunks_per_summary: int = Field(3, ge=1)
    hybrid: bool = False


class Logging(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(_Strict):
    data_dir: str = "data"
    models: Models = Models()
    graph: Graph = Graph()
    image: Image = Image()
    zmq: Zmq = Zmq()
    backend: Backend = Backend()
    sandbox: Sandbox = Sandbox()
    forge: Forge = Forge()
    memory: Memory = Memory()
    logging: Logging = Logging()


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
    plan: str
    thesis: str
    antithesis: str
    synthesis: str


class Principle(_Strict):
    id: str
    text: str


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
        missing = {"ALFRED", "BRICK", "ROBIN"} - set(names)
        if missing:
            raise ValueError(f"missing persona(s): {', '.join(sorted(missing))}")
        return value

    def persona_named(self, name: str) -> Persona:
        for persona in self.persona:
            if persona.name == name:
                return persona
        raise KeyError(name)
