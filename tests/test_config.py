"""Config validation: one clear line naming file and key, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from a4ps.config import ConfigError, load_codex, load_settings
from a4ps.config.loader import project_root
from tests.support.config import DELETE, write_config


def run_cli(config_dir, *args, env_extra=None):
    env = {**os.environ, "A4PS_CONFIG_DIR": str(config_dir), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "a4ps", *args], cwd=project_root(), env=env,
                          capture_output=True, text=True, timeout=60)


def test_shipped_config_loads():
    settings, codex = load_settings(), load_codex()
    assert {p.name for p in codex.persona} >= {"ALFRED", "BRICK", "ROBIN"}
    assert os.path.isabs(settings.data_dir)


@pytest.mark.parametrize("overrides, key, detail", [
    ({"graph.max_turns": DELETE}, "graph.max_turns", "missing key"),
    ({"graph.max_turns": "three"}, "graph.max_turns", "valid integer"),
    ({"zmq.max_request_bytes": 5}, "zmq.max_request_bytes", "greater than or equal"),
    ({"models.provider": "gpt"}, "models.provider", "'auto', 'embedded' or 'ollama'"),
    ({"graph.speed": 3}, "graph.speed", "unknown key"),
])
def test_bad_settings_name_file_and_key(tmp_path, overrides, key, detail):
    config_dir = write_config(tmp_path / "cfg", settings=overrides)
    with pytest.raises(ConfigError) as info:
        load_settings(config_dir / "settings.toml")
    message = str(info.value)
    assert str(config_dir / "settings.toml") in message and f"'{key}'" in message and detail in message
    assert "\n" not in message


def test_bad_codex_names_the_key(tmp_path):
    config_dir = write_config(tmp_path / "cfg", codex={"prompts.plan": DELETE})
    with pytest.raises(ConfigError, match=r"codex.toml: key 'prompts.plan': missing key"):
        load_codex(config_dir / "codex.toml")


def test_invalid_toml_and_missing_file(tmp_path):
    config_dir = write_config(tmp_path / "cfg")
    (config_dir / "settings.toml").write_text("[graph\nmax_turns = 3\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(config_dir / "settings.toml")
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml")


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path):
    config_dir = write_config(tmp_path / "cfg", settings={"image.keep_checkpoints": "five"})
    result = run_cli(config_dir, "serve")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "settings.toml" in lines[0] and "image.keep_checkpoints" in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_codex_error_exits_2(tmp_path):
    config_dir = write_config(tmp_path / "cfg", codex={"version": "one"})
    result = run_cli(config_dir, "serve")
    assert result.returncode == 2 and "codex.toml" in result.stderr and "'version'" in result.stderr


def test_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("A4PS_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("A4PS_PUB_ADDR", "tcp://127.0.0.1:7001")
    monkeypatch.setenv("A4PS_REP_ADDR", "tcp://127.0.0.1:7002")
    settings = load_settings()
    assert settings.data_dir == str(tmp_path / "state")
    assert (settings.zmq.pub_addr, settings.zmq.rep_addr) == ("tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002")
