"""Shared fixtures: temporary config/data dirs and the Ollama stand-in."""

from __future__ import annotations

import pytest

from tests.support.backend import BackendProcess
from tests.support.config import write_config


# What each sandbox backend needs of the machine; a non-root developer runs `-m "not needs_root"`.
SANDBOX_MARKS = {"runsc": ("needs_runsc", "needs_root"), "docker": ("needs_docker", "needs_root"),
                 "bwrap": ("needs_bwrap",)}
SANDBOX_PARAMS = ("sandbox", "executor", "backend")  # fixtures/arguments that name a sandbox backend


def pytest_collection_modifyitems(config, items):
    """Mark every test by the sandbox backend it runs on (from its parameters), so the suites can
    be selected by what the machine offers without each test file repeating it."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        backends = {value for key, value in params.items() if key in SANDBOX_PARAMS and isinstance(value, str)}
        if "docker_executor" in getattr(item, "fixturenames", ()):
            backends.add("docker")
        for backend in backends & set(SANDBOX_MARKS):
            for mark in SANDBOX_MARKS[backend]:
                item.add_marker(mark)


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
