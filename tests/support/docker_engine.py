"""The sandbox tests' view of a Docker engine: whether one must be there, and what a run left in it.

Locally a missing engine skips the docker cases (with how to start one). In CI (CI=true, or
A4PS_REQUIRE_DOCKER=1, which .ci/run sets) it fails them: there .ci/dockerd.sh starts a private
engine and nothing about Docker may silently skip.
"""

from __future__ import annotations

import os
import time

import pytest

RUN_LABEL = "a4ps.sandbox.run"


def docker_required() -> bool:
    return os.environ.get("A4PS_REQUIRE_DOCKER") == "1" or os.environ.get("CI", "").lower() == "true"


def docker_unavailable(reason: str) -> None:
    """Skip (locally) or fail (CI) a test that needs the docker backend, saying why."""
    if docker_required():
        pytest.fail(f"the docker backend is required here (CI / A4PS_REQUIRE_DOCKER=1) but is unavailable: {reason}")
    pytest.skip(f"{reason} — start an engine with `.ci/dockerd.sh start` and export the DOCKER_HOST it prints")


def client():
    import docker

    return docker.from_env(timeout=30)


def run_container_ids(engine, run_id: str, since: float) -> set[str]:
    """Ids of every container the engine created for this run since `since` (from its event log,
    so removed containers are found too)."""
    events = engine.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "label": f"{RUN_LABEL}={run_id}"})
    return {event["id"] for event in events if event.get("id")}


def run_containers_left(engine, run_id: str) -> list[str]:
    """Containers of this run that still exist (any state)."""
    return [c.name for c in engine.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})]


def live_run_container_ids(engine) -> set[str]:
    """Ids of the sandbox run containers running now (any run)."""
    return {c.id for c in engine.containers.list(filters={"label": RUN_LABEL})}
