"""Fixtures over real components: the Docker engine, a SQLite file, a hypercorn server."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import LiveServer, make_wheel

IN_CI = os.environ.get("CI", "").lower() == "true"


@dataclass(frozen=True)
class Wheelhouse:
    folder: Path
    requirement: str
    value: str

    def server_env(self) -> dict[str, str]:
        return {
            "TASKDASH_PIP_FIND_LINKS": str(self.folder),
            "TASKDASH_PIP_NO_INDEX": "true",
            "TASKDASH_BUILD_NETWORK": "none",
            # The suite starts hundreds of runs on one server; the limit has its own tests.
            "TASKDASH_RUN_RATE_PER_MINUTE": "0",
        }


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
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    """A local folder of wheels: requirement builds in tests use it instead of an index."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    folder.chmod(0o755)  # builds run as the run user, who must read it
    version = f"1.0.{uuid.uuid4().int % 10**9}"
    make_wheel(folder, "tdprobe", version, f"VALUE = 'probe {version}'\n")
    return Wheelhouse(folder, f"tdprobe=={version}", f"probe {version}")


@pytest.fixture(scope="session")
def server(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, wheelhouse: Wheelhouse
) -> Iterator[LiveServer]:
    """One real server for the session; tests create their own tasks on it."""
    live = LiveServer(
        tmp_path_factory.mktemp("server") / "data", env=wheelhouse.server_env()
    ).start()
    yield live
    live.stop()
    remove_containers(live)


@pytest.fixture()
def make_server(
    docker_engine: None, tmp_path: Path, wheelhouse: Wheelhouse
) -> Iterator[Callable[..., LiveServer]]:
    """Servers with their own settings and data dir, stopped after the test."""
    started: list[LiveServer] = []

    def start(*, healthy: bool = True, data_dir: Path | None = None, **env: str) -> LiveServer:
        folder = data_dir or tmp_path / f"data{len(started)}"
        settings = wheelhouse.server_env() | {f"TASKDASH_{k.upper()}": v for k, v in env.items()}
        live = LiveServer(folder, env=settings).start(healthy=healthy)
        started.append(live)
        return live

    yield start
    for live in started:
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
