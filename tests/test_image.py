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


def test_key_creation_never_leaves_an_empty_or_partial_key(tmp_path, monkeypatch):
    """The key is written to a temp file and linked into place: a crash while writing leaves no
    key (and the next start makes one), never an empty key that blocks every start."""
    import a4ps.privatefile as privatefile

    def crash(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(privatefile.os, "write", crash)
    with pytest.raises(OSError):
        make_image(tmp_path).save(sample_state())
    monkeypatch.undo()
    assert not (tmp_path / "image.key").exists() and list(tmp_path.glob(".image.key.*")) == []
    make_image(tmp_path).save(sample_state(3))
    assert len((tmp_path / "image.key").read_bytes()) == 32
    assert make_image(tmp_path).load_latest()[0]["protos"]["BRICK"].counters["calls"] == 3


def test_an_empty_key_from_an_older_crash_is_replaced(tmp_path, caplog):
    (tmp_path / "image.key").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        make_image(tmp_path).save(sample_state(4))
    assert "is empty (a crash while it was created)" in caplog.text
    assert len((tmp_path / "image.key").read_bytes()) == 32
    assert stat.S_IMODE((tmp_path / "image.key").stat().st_mode) == 0o600


def test_checkpoints_are_ordered_by_a_counter_not_the_clock(tmp_path, monkeypatch):
    import a4ps.protos.image as image_module

    image = make_image(tmp_path, keep=10)
    first = image.save(sample_state(1))
    real_time = image_module.time.time
    monkeypatch.setattr(image_module.time, "time_ns", lambda: 1)  # the clock jumps back
    monkeypatch.setattr(image_module.time, "time", lambda: real_time() - 86_400)
    second = image.save(sample_state(2))
    assert image.checkpoints() == [second, first]
    assert make_image(tmp_path).load_latest()[0]["protos"]["BRICK"].counters["calls"] == 2


def test_an_older_clock_named_checkpoint_is_continued_after(tmp_path):
    image = make_image(tmp_path)
    old = image.save(sample_state(1)).rename(tmp_path / "image" / "image-01796189716624405205.dill")
    newer = image.save(sample_state(2))
    assert image.checkpoints() == [newer, old]


def test_stale_temp_files_are_removed_and_fresh_ones_kept(tmp_path):
    import os
    import time

    image = make_image(tmp_path)
    image.save(sample_state(1))
    stale, fresh = tmp_path / "image" / ".image-00000000000000000007.tmp", tmp_path / "image" / ".image-x.tmp"
    stale.write_bytes(b"half a checkpoint")
    fresh.write_bytes(b"being written")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    stale_key = tmp_path / ".image.key.0123456789ab.tmp"
    stale_key.write_bytes(b"")
    os.utime(stale_key, (time.time() - 3600, time.time() - 3600))
    state, _ = make_image(tmp_path).load_latest()
    assert state is not None and not stale.exists() and fresh.exists()
    image.save(sample_state(2))
    assert not stale.exists()


def test_a_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    import a4ps.protos.image as image_module

    image = make_image(tmp_path)
    image.save(sample_state(1))

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_module.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        image.save(sample_state(2))
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "image").iterdir() if p.name.startswith(".")] == []
