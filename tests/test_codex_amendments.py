"""Codex amendments without a backend: what may change, the `consent` rule, and the versioned file."""

from __future__ import annotations

import tomllib

import pytest
import toml

from a4ps.cadence.amendment import AmendmentError, Change, apply, proposal_schema, targets
from a4ps.cadence.codex_file import CodexFile, CodexFileError, render_codex
from a4ps.config import load_codex
from a4ps.config.loader import project_root

CODEX_TEXT = (project_root() / "config" / "codex.toml").read_text()


@pytest.fixture
def codex():
    return load_codex(project_root() / "config" / "codex.toml")


@pytest.mark.parametrize("change, message", [
    (Change("principle.consent.remove", ""), "'consent' can never be removed"),
    (Change("principle.consent", "The codex changes when ALFRED sees fit."), "can never be weakened"),
    (Change("persona.NOBODY.role", "x"), "no codex field 'persona.NOBODY.role'"),
    (Change("persona.BRICK.temperature", "7.5"), "less than or equal to 2"),
    (Change("persona.BRICK.max_tokens", "many"), "needs an integer"),
    (Change("persona.ROBIN.system_prompt", ""), "system_prompt"),
    (Change("prompts.plan", "Plan {task}."), "missing ['memories']"),
    (Change("prompts.judge", "{task} {first} {second} {secret}"), "unknown ['secret']"),
    (Change("principle.new", "Be brief.", "Brevity!"), "principle_id of lowercase"),
    (Change("principle.new", "Be brief.", "honesty"), "exists already"),
    (Change("persona.ALFRED.role", "Steward: plans the work and synthesizes the final answer."), "leaves"),
])
def test_a_change_that_cannot_be_made_is_refused_with_the_reason(codex, change, message):
    with pytest.raises(AmendmentError) as refused:
        apply(codex, change)
    assert message in str(refused.value)


def test_every_target_is_in_the_schema_and_consent_stays_editable_only_by_hand(codex):
    schema = proposal_schema(codex)
    assert schema["properties"]["target"]["enum"] == targets(codex)
    assert {"principle.consent", "principle.consent.remove"} <= set(targets(codex))  # named, so a refusal can say why
    assert set(schema["required"]) == set(schema["properties"])


@pytest.mark.parametrize("source", ["as written", "as toml.dumps writes it"])
@pytest.mark.parametrize("change", [
    Change("persona.ROBIN.system_prompt", 'You are ROBIN.\nSay "why" \\ briefly.'),
    Change("persona.BRICK.temperature", "0.25"),
    Change("principle.honesty.remove", ""),
    Change("principle.new", "Prefer short answers.", "brevity"),
    Change("prompts.judge", "Which is better for {task}? 1: {first} 2: {second}"),
])
def test_the_file_is_edited_in_place_and_reads_back_exactly(codex, change, source):
    text = CODEX_TEXT if source == "as written" else toml.dumps(codex.model_dump())
    amended = apply(codex, change).model_copy(update={"version": codex.version + 1})
    written = render_codex(text, codex, amended)
    assert tomllib.loads(written) == amended.model_dump()
    if source == "as written":  # comments and layout kept: only the changed lines differ
        assert written.count("\n#") == text.count("\n#")
        changed = set(written.splitlines()) ^ set(text.splitlines())
        assert len(changed) <= 12, changed


def test_versions_are_archived_recorded_and_restored(tmp_path, codex):
    path = tmp_path / "codex.toml"
    path.write_text(CODEX_TEXT)
    store = CodexFile(path, tmp_path / "history")
    first = codex.version
    written, old_text, new_text = store.write_version(apply(codex, Change("persona.BRICK.temperature", "0.2")),
                                                      why="calmer BRICK", by="proposal", proposal_id="p1",
                                                      expect_version=first)
    assert written.version == first + 1 and old_text == CODEX_TEXT and path.read_text() == new_text
    assert (tmp_path / "history" / f"codex-v{first}.toml").read_text() == CODEX_TEXT
    with pytest.raises(CodexFileError, match="not " + str(first)):
        store.write_version(written, why="stale", by="proposal", expect_version=first)
    restored, _, _ = store.revert(first, "revert to version 1")
    assert restored.version == first + 2
    assert tomllib.loads(path.read_text()) == {**tomllib.loads(CODEX_TEXT), "version": first + 2}
    versions = store.versions()
    assert [v["version"] for v in versions] == [first, first + 1, first + 2]
    assert [v["by"] for v in versions] == [None, "proposal", "revert"] and versions[-1]["current"]
    assert versions[1]["why"] == "calmer BRICK" and versions[1]["proposal_id"] == "p1"
    with pytest.raises(CodexFileError, match="no archived codex version 99"):
        store.revert(99, "nothing")
