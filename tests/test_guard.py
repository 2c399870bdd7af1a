"""The guarded command socket: local addresses only, and a token for every state-changing command."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import msgpack
import pytest

from a4ps.client import Requester
from a4ps.config.loader import bind_address_problem, project_root
from tests.support.backend import BackendProcess
from tests.support.config import free_port, write_config

CHANGING = [("submit_task", {"text": "Name one bird."}), ("update_proto", {"name": "BRICK", "changes": {"top_p": 0.5}}),
            ("cancel_task", {"task_id": "nope"}), ("save_image", {}), ("shutdown", {})]


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:5555", "tcp://127.8.9.10:1", "tcp://[::1]:5555",
                                     "tcp://localhost:5555", "ipc:///tmp/a4ps.sock", "inproc://events"])
def test_local_addresses_are_allowed(address):
    assert bind_address_problem(address) is None


@pytest.mark.parametrize("address, why", [
    ("tcp://0.0.0.0:5555", "'0.0.0.0', which is not a loopback address"),
    ("tcp://*:5555", "'*', which is not a loopback address"),
    ("tcp://[::]:5555", "'::', which is not a loopback address"),
    ("tcp://192.168.1.20:5555", "not a loopback address"),
    ("tcp://eth0:5555", "'eth0', which is not a loopback address"),
    ("epgm://eth0;239.192.1.1:5555", "transport 'epgm'"),
    ("127.0.0.1:5555", "not a ZeroMQ address"),
])
def test_addresses_that_reach_other_machines_are_refused(address, why):
    assert why in bind_address_problem(address)


def test_reading_is_open_and_changing_needs_the_token(backend):
    anonymous = Requester(backend.rep_addr)
    assert anonymous.request("ping")["ok"] and anonymous.request("get_state")["ok"]
    assert anonymous.request("list_tools")["ok"]
    assert anonymous.request("get_tool", name="nope")["code"] == "not_found"
    before = backend.request("get_state")["state"]
    for cmd, args in CHANGING:
        for token in (None, "0" * 64, 12):
            reply = anonymous.request(cmd, **args, **({} if token is None else {"token": token}))
            assert reply["ok"] is False and reply["code"] == "unauthorized", (cmd, token, reply)
            assert f"{cmd!r} changes the backend's state" in reply["error"]
            assert str(backend.token_file) in reply["error"] and backend.token not in reply["error"]
    after = backend.request("get_state")["state"]
    assert [t["task_id"] for t in after["tasks"]] == [t["task_id"] for t in before["tasks"]]
    assert after["protos"] == before["protos"] and backend.request("ping")["ok"], "nothing changed, still up"
    assert Requester(backend.rep_addr, token_file=backend.token_file).request("cancel_task", task_id="nope")[
        "code"] == "not_found", "with the token the same command is served"


def test_the_token_file_is_private_and_survives_a_restart(tmp_path):
    config, data = write_config(tmp_path / "config"), tmp_path / "data"
    with BackendProcess(data, config) as first:
        token = first.token
        mode = stat.S_IMODE(first.token_file.stat().st_mode)
        assert mode == 0o600 and len(token) == 64 and int(token, 16) >= 0
        assert [p.name for p in data.iterdir() if p.name.startswith(".control.token")] == [], "no temp left"
    first.token_file.chmod(0o644)
    with BackendProcess(data, config) as second:
        assert second.token == token and stat.S_IMODE(second.token_file.stat().st_mode) == 0o600
        assert second.request("save_image")["ok"]
        raw = Requester(second.rep_addr).request_raw(msgpack.packb({"cmd": "save_image", "token": token}))
        assert raw["ok"]


def test_a_remote_bind_address_is_refused_unless_allowed(tmp_path):
    config = write_config(tmp_path / "config")
    env = {**os.environ, "A4PS_CONFIG_DIR": str(config), "A4PS_DATA_DIR": str(tmp_path / "data"),
           "A4PS_PUB_ADDR": f"tcp://127.0.0.1:{free_port()}", "A4PS_REP_ADDR": f"tcp://0.0.0.0:{free_port()}"}
    refused = subprocess.run([sys.executable, "-m", "a4ps", "serve"], cwd=project_root(), env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "environment variable A4PS_REP_ADDR" in refused.stderr and "zmq.allow_remote = true" in refused.stderr

    allowed = write_config(tmp_path / "allowed", settings={"zmq.allow_remote": True})
    port = free_port()
    backend = BackendProcess(tmp_path / "data2", allowed, extra_env={"A4PS_REP_ADDR": f"tcp://0.0.0.0:{port}"})
    backend.rep_addr = f"tcp://127.0.0.1:{port}"  # clients connect through loopback
    with backend:
        assert backend.request("ping")["ok"] and backend.request("save_image")["ok"]
