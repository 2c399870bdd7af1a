"""Shared fixtures: temporary config/data dirs and the Ollama stand-in."""

from __future__ import annotations

import pytest

from tests.support.config import write_config


@pytest.fixture
def config_dir(tmp_path):
    return write_config(tmp_path / "config")


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path
