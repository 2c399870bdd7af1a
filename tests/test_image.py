"""The living image: round trip, signature, tamper/truncation refusal, fallback, pruning."""

from __future__ import annotations

import logging
import pickle
import stat

import pytest

from a4ps.protos import ImageError, LivingImage, Proto


def make_image(tmp_path, keep=3):
    return LivingImage(tmp_path / "image", tmp_path / "image.key", keep)


def sample_state(n=1):
    proto = Proto("BRICK", "Analyst", "prompt", "m", 0.4, 0.9, 256, counters={"calls": n, "tokens": 3, "tasks": 1})
    return {"format": 1, "protos": {"BRICK": proto}, "tasks": [{"text": f"task {n}"}]}


def test_round_trip_keeps_live_objects(tmp_path):
    image = make_image(tmp_path)
    image.save(sample_state(7))
    state, path = image.load_latest()
    assert path is not None and state["protos"]["BRICK"].counters["calls"] == 7
    assert isinstance(state["protos"]["BRICK"], Proto)


def test_key_is_created_private(tmp_path):
    make_image(tmp_path).save(sample_state())
    mode = stat.S_IMODE((tmp_path / "image.key").stat().st_mode)
    assert mode == 0o600 and len((tmp_path / "image.key").read_bytes()) == 32


def test_fresh_start_without_image(tmp_path):
    assert make_image(tmp_path).load_latest() == (None, None)


@pytest.mark.parametrize("damage", ["flip", "truncate", "unsigned", "empty"])
def test_bad_newest_falls_back_to_previous(tmp_path, caplog, damage):
    image = make_image(tmp_path)
    image.save(sample_state(1))
    newest = image.save(sample_state(2))
    raw = newest.read_bytes()
    if damage == "flip":
        newest.write_bytes(raw[:-5] + bytes([raw[-5] ^ 0xFF]) + raw[-4:])
    elif damage == "truncate":
        newest.write_bytes(raw[: len(raw) // 2])
    elif damage == "unsigned":
        newest.write_bytes(pickle.dumps(sample_state(99)))
    else:
        newest.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        state, path = make_image(tmp_path).load_latest()
    assert path != newest and state["protos"]["BRICK"].counters["calls"] == 1
    assert any("refused living image" in r.message and newest.name in r.message for r in caplog.records)


def test_malicious_payload_is_never_unpickled(tmp_path):
    """A signature made with another key is refused before dill runs any code."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    other = LivingImage(tmp_path / "image", tmp_path / "other.key", 3)
    other.save({"x": Exploit()})
    with pytest.raises(ImageError, match="signature mismatch"):
        make_image(tmp_path).read(other.checkpoints()[0])
    assert make_image(tmp_path).load_latest() == (None, None)
    assert not marker.exists()


def test_keeps_last_n_checkpoints_and_no_temp_files(tmp_path):
    image = make_image(tmp_path, keep=3)
    for n in range(6):
        image.save(sample_state(n))
    files = sorted(p.name for p in (tmp_path / "image").iterdir())
    assert len(files) == 3 and all(name.startswith("image-") for name in files)
    state, _ = image.load_latest()
    assert state["protos"]["BRICK"].counters["calls"] == 5
