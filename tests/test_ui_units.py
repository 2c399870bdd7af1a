"""UI pieces that need no window: remembered morph positions, proposal parsing, persona colours."""

from __future__ import annotations

import json

import pytest

import tests.support.ui_harness  # noqa: F401  (configures Kivy before anything imports it)
from a4ps.ui import theme
from a4ps.ui.approval_dialog import diff_colour, parse_proposal
from a4ps.ui.morph_positions import MorphPositions


def test_positions_round_trip_through_the_json_file(tmp_path):
    positions = MorphPositions.in_data_dir(tmp_path)
    assert positions.get("proto:BRICK") is None
    positions.set("proto:BRICK", (0.25, 0.75))
    positions.set("tool:word_count", (1.7, -0.2))  # clamped into the canvas
    assert positions.save()
    path = tmp_path / "ui" / "morph_positions.json"
    assert json.loads(path.read_text()) == {"proto:BRICK": [0.25, 0.75], "tool:word_count": [1.0, 0.0]}
    again = MorphPositions.in_data_dir(tmp_path)
    assert again.get("proto:BRICK") == (0.25, 0.75) and again.get("tool:word_count") == (1.0, 0.0)
    assert [p.name for p in path.parent.iterdir()] == ["morph_positions.json"], "no temp file left behind"


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe{}"])
def test_an_unreadable_positions_file_is_ignored(tmp_path, content):
    path = tmp_path / "ui" / "morph_positions.json"
    path.parent.mkdir()
    path.write_bytes(content)
    positions = MorphPositions(path)
    assert positions.get("proto:BRICK") is None
    positions.set("proto:BRICK", (0.5, 0.5))
    assert positions.save() and MorphPositions(path).get("proto:BRICK") == (0.5, 0.5)


def test_bad_entries_are_dropped_and_good_ones_kept(tmp_path):
    path = tmp_path / "positions.json"
    path.write_text(json.dumps({"a": [0.1, 0.2], "b": [2, 0.5], "c": "left", "d": [True, 0.1], "e": [0.3]}))
    positions = MorphPositions(path)
    assert positions.get("a") == (0.1, 0.2)
    assert [positions.get(k) for k in "bcde"] == [None, None, None, None]


def test_a_refused_save_reports_false_instead_of_raising(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    positions = MorphPositions.in_data_dir(blocker)
    positions.set("proto:ROBIN", (0.1, 0.1))
    assert positions.save() is False


def test_proposal_fields_are_typed_and_an_id_is_required():
    parsed = parse_proposal({"proposal_id": 12, "diff": "+a", "history": ["one", 2], "consequences": None,
                             "history_digest": "ab" * 32})
    assert parsed == {"proposal_id": 12, "diff": "+a", "history": ["one", "2"], "consequences": "",
                      "justification": "", "history_digest": "ab" * 32}
    assert parse_proposal({"proposal_id": "x", "history": "single entry"})["history"] == ["single entry"]
    for bad in ({}, {"proposal_id": ""}, {"proposal_id": True}, {"proposal_id": [1]}):
        with pytest.raises(ValueError):
            parse_proposal(bad)
    assert diff_colour("+new") == theme.GOOD_HEX and diff_colour("-old") == theme.BAD_HEX
    assert diff_colour("+++ b/codex.toml") == theme.MUTED_HEX and diff_colour("@@ 1 @@") == theme.HUNK_HEX
    assert diff_colour(" same") is None


def test_persona_colours_are_fixed_for_the_three_and_stable_for_others():
    assert theme.persona_hex("BRICK") == theme.PERSONA_HEX["BRICK"]
    assert len({theme.persona_hex(n) for n in ("ALFRED", "BRICK", "ROBIN")}) == 3
    assert theme.persona_hex("BABS") == theme.persona_hex("BABS")
    assert all(0 <= c <= 1 for c in theme.persona_rgba("BABS"))


def test_a_proto_morph_shows_the_lora_adapter_its_persona_speaks_with_and_drops_it_on_rollback():
    from a4ps.ui.morphs import ProtoMorph

    proto = {"name": "BRICK", "role": "Analyst", "model": "a4ps-brick:job1", "status": "idle", "adapter": "job1"}
    morph = ProtoMorph(proto)
    assert morph.adapter == "job1" and morph._model.text == "a4ps-brick:job1  · LoRA job1"
    morph.update({**proto, "model": "phi3:mini", "adapter": None})
    assert morph.adapter == "" and morph._model.text == "phi3:mini"
