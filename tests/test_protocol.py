"""The ZeroMQ protocol against a real backend subprocess: commands, snapshots, fuzzed garbage."""

from __future__ import annotations

import random
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from a4ps.client import EventSubscriber, Requester
from a4ps.protos import LivingImage
from tests.support.backend import wait_for_task


def test_ping_and_state(backend):
    reply = backend.request("ping")
    assert reply["ok"] and reply["pong"] and reply["provider"] == "embedded"
    state = backend.request("get_state")["state"]
    assert {p["name"] for p in state["protos"]} == {"ALFRED", "BRICK", "ROBIN"}
    assert state["provider"] == "embedded" and "no Ollama server answered" in state["provider_reason"]
    assert state["autonomy"]["state"] in ("idle", "running", "paused")


def test_get_state_carries_the_seq_it_reflects(backend):
    events = EventSubscriber(backend.pub_addr)
    joined = events.wait_for("state", 10.0)
    first = backend.request("get_state")
    assert first["state"]["run_id"] == joined["snapshot"]["run_id"] == backend.request("ping")["run_id"]
    assert isinstance(first["seq"], int) and first["seq"] >= joined["seq"]
    backend.request("update_proto", name="ALFRED", changes={"top_p": 0.8})
    announced = events.wait_for("proto", 5.0)
    assert announced["seq"] > first["seq"], "an event after a snapshot has a newer seq"
    second = backend.request("get_state")
    assert second["seq"] >= announced["seq"]
    assert next(p for p in second["state"]["protos"] if p["name"] == "ALFRED")["top_p"] == 0.8
    events.close()


def test_join_snapshot_arrives_for_every_new_subscriber(backend):
    for _ in range(3):
        events = EventSubscriber(backend.pub_addr)
        snapshot = events.wait_for("state", 5.0)
        events.close()
        assert snapshot is not None and snapshot["seq"] > 0 and "protos" in snapshot["snapshot"]


def test_update_proto_applies_live_and_is_announced(backend):
    events = backend.subscribe()
    reply = backend.request("update_proto", name="ROBIN", changes={"temperature": 0.2, "system_prompt": "Be kind."})
    assert reply["ok"] and reply["proto"]["temperature"] == 0.2 and reply["proto"]["system_prompt"] == "Be kind."
    announced = events.wait_for("proto", 5.0)
    assert announced["proto"]["name"] == "ROBIN" and announced["proto"]["temperature"] == 0.2
    state = backend.request("get_state")["state"]
    assert next(p for p in state["protos"] if p["name"] == "ROBIN")["system_prompt"] == "Be kind."
    events.close()


@pytest.mark.parametrize("request_map, code", [
    ({"cmd": "update_proto", "name": "NOBODY", "changes": {"temperature": 0.1}}, "not_found"),
    ({"cmd": "update_proto", "name": "ROBIN", "changes": {"temperature": 9.0}}, "invalid_value"),
    ({"cmd": "update_proto", "name": "ROBIN", "changes": {"counters": {}}}, "invalid_value"),
    ({"cmd": "update_proto", "name": "ROBIN", "changes": "warm"}, "bad_request"),
    ({"cmd": "submit_task", "text": "   "}, "invalid_value"),
    ({"cmd": "submit_task", "text": 42}, "bad_request"),
    ({"cmd": "submit_task"}, "bad_request"),
    ({"cmd": "cancel_task", "task_id": "nope"}, "not_found"),
    ({"cmd": "fly"}, "unknown_command"),
    ({"command": "ping"}, "bad_request"),
])
def test_invalid_commands_get_clear_errors(backend, request_map, code):
    reply = Requester(backend.rep_addr).request_raw(msgpack.packb({**request_map, "token": backend.token}))
    assert reply["ok"] is False and reply["code"] == code and reply["error"]


def test_oversized_and_multiframe_requests(backend):
    requester = Requester(backend.rep_addr)
    big = msgpack.packb({"cmd": "submit_task", "text": "x" * 2_000_000})
    assert requester.request_raw(big)["code"] == "too_large"
    assert requester.request_raw([b"a", b"b"])["code"] == "bad_request"
    assert requester.request("ping")["ok"]


def fuzz_payloads(rng: random.Random, n: int):
    valid = msgpack.packb({"cmd": "update_proto", "name": "BRICK", "changes": {"temperature": 0.5}})
    for i in range(n):
        kind = i % 8
        if kind == 0:
            yield rng.randbytes(rng.randint(0, 64))
        elif kind == 1:  # a valid request with bytes flipped
            raw = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            yield bytes(raw)
        elif kind == 2:  # truncated
            yield valid[: rng.randrange(len(valid))]
        elif kind == 3:  # wrong top-level types
            yield msgpack.packb(rng.choice([[1, 2], "ping", 3.5, None, True, b"bin"]))
        elif kind == 4:  # wrong field types
            yield msgpack.packb({"cmd": rng.choice(["submit_task", "update_proto", "cancel_task"]),
                                 "text": rng.choice([None, 1, [], {}]), "name": 5, "task_id": [1],
                                 "changes": rng.choice([None, [], {"model": 1}, {"top_p": "x"}])})
        elif kind == 5:  # cmd not a string, or odd keys
            yield msgpack.packb({"cmd": rng.choice([None, 1, b"ping", ["ping"]])})
        elif kind == 6:  # deep nesting / non-string keys
            yield b"\x91" * 2000 + b"\xc0"
        else:
            yield msgpack.packb({1: 2, "cmd": "ping"}) if rng.random() < 0.5 else b"\xc1\xc1"


def test_thousand_fuzzed_requests_then_ping(backend):
    rng = random.Random(20261122)
    requester = Requester(backend.rep_addr, timeout_s=5.0)
    replies = [requester.request_raw(payload) for payload in fuzz_payloads(rng, 1000)]
    assert len(replies) == 1000 and all(isinstance(r, dict) and "ok" in r for r in replies)
    assert sum(not r["ok"] for r in replies) >= 900
    assert requester.request("ping")["ok"]
    # and a raw REQ that disappears mid-request does not wedge the REP socket
    ctx = zmq.Context.instance()
    rude = ctx.socket(zmq.REQ)
    rude.connect(backend.rep_addr)
    rude.send(b"\x00")
    rude.close(linger=0)
    assert requester.request("ping")["ok"]


def test_cancel_a_queued_task_and_run_one(backend):
    events = backend.subscribe()
    first = backend.request("submit_task", text="Name one colour.")
    second = backend.request("submit_task", text="Name one fruit.")
    assert first["ok"] and second["ok"] and second["position"] >= 1
    assert backend.request("cancel_task", task_id=second["task_id"])["status"] == "cancelled"
    done = wait_for_task(events, first["task_id"], {"done", "failed"}, 240)
    assert done["status"] == "done" and done["result"] and done["turns"] == 1
    state = backend.request("get_state")["state"]
    statuses = {t["task_id"]: t["status"] for t in state["tasks"]}
    assert statuses[first["task_id"]] == "done" and statuses[second["task_id"]] == "cancelled"
    events.close()


def test_save_image_writes_a_signed_checkpoint(backend):
    reply = backend.request("save_image")
    path = Path(reply["path"])
    assert reply["ok"] and path.parent == backend.data_dir / "image" and abs(reply["saved_at"] - time.time()) < 60
    image = LivingImage(backend.data_dir / "image", backend.data_dir / "image.key", 5)
    assert path in image.checkpoints()
    state = image.read(path)  # the signature verifies
    assert state["format"] == 2 and {t["task_id"] for t in state["tasks"]} == {
        t["task_id"] for t in backend.request("get_state")["state"]["tasks"]}
