"""Shared fixtures: temporary config/data dirs and the Ollama stand-in."""

from __future__ import annotations

import pytest

from tests.support.backend import BackendProcess
from tests.support.config import write_config


@pytest.fixture
def config_dir(tmp_path):
    return write_config(tmp_path / "config")


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """A real backend subprocess (embedded model, one BRICK/ROBIN turn) shared by a test module."""
    root = tmp_path_factory.mktemp("backend")
    config = write_config(root / "config", settings={"graph.max_turns": 1})
    with BackendProcess(root / "data", config) as proc:
        yield proc
