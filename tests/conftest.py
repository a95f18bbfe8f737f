"""Fixtures over real components: the Docker engine, a SQLite file, a hypercorn server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import LiveServer

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip locally when a real component is missing; under CI a missing component fails."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the test set-up must provide it)")
    pytest.skip(reason)


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_engine() -> None:
    require(docker_answers(), "no Docker engine answers `docker info`: run `make test`")


@pytest.fixture(scope="session")
def server(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server for the session; tests create their own tasks on it."""
    live = LiveServer(tmp_path_factory.mktemp("server") / "data").start()
    yield live
    live.stop()
    remove_containers(live)


@pytest.fixture()
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def remove_containers(live: LiveServer) -> None:
    """Containers a stopped test server left running (by design they outlive a restart)."""
    instance = live.environment()["TASKDASH_INSTANCE_ID"]
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=taskdash.instance={instance}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if found:
        subprocess.run(["docker", "rm", "-fv", *found], capture_output=True)


@pytest.fixture()
def fresh_data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
