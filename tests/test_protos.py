"""Protos over a restart: the image keeps live edits only, the codex and the active provider win."""

from __future__ import annotations

import logging

import toml

from a4ps.config import load_codex
from a4ps.protos import LivingImage, ProtoManager
from tests.support.backend import BackendProcess
from tests.support.config import PLUMBING_MODEL, write_config
from tests.support.ollama_standin import OllamaStandIn

OLLAMA_MODELS = ["llama3.2:3b", "phi3:mini", "gemma2:2b"]


def edited_codex(config_dir, **brick_changes):
    """Rewrite the temporary codex: BRICK's fields changed, and `version` when given."""
    path = config_dir / "codex.toml"
    data = toml.loads(path.read_text())
    if "version" in brick_changes:
        data["version"] = brick_changes.pop("version")
    brick = next(p for p in data["persona"] if p["name"] == "BRICK")
    brick.update(brick_changes)
    path.write_text(toml.dumps(data))
    return load_codex(path)


def restart(manager: ProtoManager, codex, provider: str) -> ProtoManager:
    """What a backend restart does: export to the image's plain data, rebuild from the codex."""
    return ProtoManager.from_codex(codex, provider, manager.export())


def test_live_edits_survive_a_restart_and_counters_always_do(tmp_path):
    codex = load_codex(write_config(tmp_path / "config") / "codex.toml")
    protos = ProtoManager.from_codex(codex, "embedded")
    protos.update("BRICK", {"temperature": 0.11, "system_prompt": "Be terse."})
    protos.record_call("BRICK", 42)
    again = restart(protos, codex, "embedded")
    assert again.get("BRICK").temperature == 0.11 and again.get("BRICK").system_prompt == "Be terse."
    assert again.get("BRICK").counters["tokens"] == 42
    assert again.get("ROBIN").temperature == codex.persona_named("ROBIN").temperature
    assert again.overrides() == {"BRICK": {"temperature": 0.11, "system_prompt": "Be terse."}}
    again.update("BRICK", {"temperature": codex.persona_named("BRICK").temperature})
    assert again.overrides() == {"BRICK": {"system_prompt": "Be terse."}}, "an edit back to the codex clears"


def test_the_model_follows_the_provider_and_a_model_edit_waits_for_its_own(tmp_path, caplog):
    codex = load_codex(write_config(tmp_path / "config") / "codex.toml")
    protos = ProtoManager.from_codex(codex, "embedded")
    protos.update("BRICK", {"model": "my-brick.gguf", "temperature": 0.2})
    with caplog.at_level(logging.INFO):
        on_ollama = restart(protos, codex, "ollama")
    assert on_ollama.get("BRICK").model == "phi3:mini" and on_ollama.get("BRICK").temperature == 0.2
    assert "live edit BRICK.model@embedded kept for embedded; under ollama the codex model 'phi3:mini'" in caplog.text
    back = restart(on_ollama, codex, "embedded")
    assert back.get("BRICK").model == "my-brick.gguf"


def test_a_codex_edit_or_new_version_drops_stale_edits_with_a_log_line(tmp_path, caplog):
    config = write_config(tmp_path / "config")
    codex = load_codex(config / "codex.toml")
    protos = ProtoManager.from_codex(codex, "embedded")
    protos.update("BRICK", {"temperature": 0.11, "top_p": 0.5})
    protos.update("ROBIN", {"system_prompt": "Doubt kindly."})

    edited = edited_codex(config, temperature=0.65)
    with caplog.at_level(logging.WARNING):
        after_edit = restart(protos, edited, "embedded")
    assert after_edit.get("BRICK").temperature == 0.65, "the codex changed under the edit: the codex wins"
    assert after_edit.get("BRICK").top_p == 0.5 and after_edit.get("ROBIN").system_prompt == "Doubt kindly."
    assert "live edit BRICK.temperature dropped: the codex changed under it (0.4 -> 0.65)" in caplog.text

    bumped = edited_codex(config, version=edited.version + 1)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        after_bump = restart(after_edit, bumped, "embedded")
    assert after_bump.overrides() == {}
    assert after_bump.get("ROBIN").system_prompt == bumped.persona_named("ROBIN").system_prompt
    assert (f"codex version changed ({edited.version} -> {bumped.version}): live edits dropped, the codex wins: "
            "BRICK.top_p, ROBIN.system_prompt") in caplog.text


def test_a_restarted_backend_follows_the_new_provider_and_the_edited_codex(tmp_path):
    """Real restarts through the image: embedded with edits, then Ollama, then an edited codex."""
    config, data = write_config(tmp_path / "config"), tmp_path / "data"
    with BackendProcess(data, config) as first:
        assert first.request("ping")["provider"] == "embedded"
        shown = {p["name"]: p["model"] for p in first.request("get_state")["state"]["protos"]}
        assert set(shown.values()) == {PLUMBING_MODEL}, "embedded: the one model that runs, not the codex's names"
        assert first.request("update_proto", name="BRICK", changes={"temperature": 0.11})["ok"]
        assert first.request("update_proto", name="ROBIN", changes={"model": "robin-local.gguf"})["ok"]
    with OllamaStandIn(models=OLLAMA_MODELS) as server:
        with BackendProcess(data, config, extra_env={"OLLAMA_HOST": server.host}) as second:
            assert second.request("ping")["provider"] == "ollama"
            protos = {p["name"]: p for p in second.request("get_state")["state"]["protos"]}
    assert protos["ROBIN"]["model"] == "gemma2:2b" and protos["BRICK"]["model"] == "phi3:mini"
    assert protos["BRICK"]["temperature"] == 0.11
    assert "live edit ROBIN.model@embedded kept for embedded" in second.output()

    edited_codex(config, temperature=0.65, system_prompt="You are BRICK, edited in the codex.")
    with BackendProcess(data, config) as third:
        protos = {p["name"]: p for p in third.request("get_state")["state"]["protos"]}
    assert protos["BRICK"]["temperature"] == 0.65
    assert protos["BRICK"]["system_prompt"] == "You are BRICK, edited in the codex."
    assert protos["ROBIN"]["model"] == "robin-local.gguf", "back on embedded, the embedded edit applies again"
    assert "live edit BRICK.temperature dropped: the codex changed under it" in third.output()
    state, _ = LivingImage(data / "image", data / "image.key", 5).load_latest()
    assert state["protos"]["overrides"] == {"ROBIN": {"model@embedded": {"value": "robin-local.gguf",
                                                                         "base": "smollm2-135m-instruct"}}}


def test_every_organ_builds_personas_with_the_one_model_the_embedded_provider_runs():
    """for_models (used by the backend, the impact preview, the adapter gate and the forge commands):
    on the embedded provider every persona shows and asks for the model that really runs; on
    Ollama each keeps the codex's own."""
    from a4ps.config import load_settings
    from a4ps.models import ModelManager
    from a4ps.models.embedded import EmbeddedProvider
    from a4ps.models.ollama_provider import OllamaProvider

    settings = load_settings()
    settings.models.embedded.model, settings.models.embedded.model_path = PLUMBING_MODEL, ""
    codex = load_codex()
    embedded = ProtoManager.for_models(codex, ModelManager(EmbeddedProvider(settings.models.embedded)))
    assert {p["model"] for p in embedded.snapshot()} == {PLUMBING_MODEL}
    settings.models.embedded.model_path = "/models/my-own.gguf"
    mine = ProtoManager.for_models(codex, ModelManager(EmbeddedProvider(settings.models.embedded)))
    assert {p["model"] for p in mine.snapshot()} == {"my-own.gguf"}
    ollama = ProtoManager.for_models(codex, ModelManager(OllamaProvider(settings.models.ollama)))
    assert [p["model"] for p in ollama.snapshot()] == [p.models["ollama"] for p in codex.persona]
