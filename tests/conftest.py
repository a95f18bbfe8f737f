"""Fixtures over real components: the Docker engine, the database (a SQLite file, or a
PostgreSQL database of its own on the PostgreSQL pass: tests/databases.py), a hypercorn
server."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskdash.core.config import Settings
from tests import databases
from tests.support import LiveServer, make_wheel

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): runs in the SQLite pass only; the PostgreSQL pass leaves it out "
        "and says why at the end",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """On the PostgreSQL pass a cluster that does not answer stops the run: no test may pass
    by skipping the database it was asked to use."""
    if databases.CLUSTER is not None and (problem := databases.CLUSTER.check()):
        pytest.exit(
            f"TASKDASH_TEST_DATABASE=postgres, but {problem} (scripts/test.sh starts a cluster)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


SQLITE_ONLY = pytest.StashKey[list[tuple[str, str]]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass deselects the SQLite-only tests (so nothing they would start, like
    the long silence's run, starts) and lists them with their reasons in the summary."""
    left_out: list[pytest.Item] = []
    reasons: list[tuple[str, str]] = []
    for item in items:
        if (marker := item.get_closest_marker("sqlite_only")) is not None:
            if not (reason := marker.kwargs.get("reason", "")):
                raise pytest.UsageError(f"{item.nodeid}: sqlite_only(reason=...) says why")
            left_out.append(item)
            reasons.append((item.nodeid, reason))
    if left_out and databases.ON_POSTGRES:
        config.hook.pytest_deselected(items=left_out)
        dropped = set(left_out)
        items[:] = [item for item in items if item not in dropped]
        config.stash[SQLITE_ONLY] = reasons


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if reasons := config.stash.get(SQLITE_ONLY, []):
        terminalreporter.section("SQLite pass only (left out on PostgreSQL)")
        for nodeid, reason in reasons:
            terminalreporter.line(f"{nodeid}: {reason}")


@pytest.fixture(scope="session", autouse=True)
def database_per_data_dir() -> Iterator[None]:
    """On the PostgreSQL pass, settings made in the test process (in-process apps, the
    scheduler and retention tests) get their data dir's database too, where SQLite would
    put its file in the data dir; the databases are dropped at the end."""
    cluster = databases.CLUSTER
    if cluster is None:
        yield
        return

    def database(settings: Settings) -> str:
        return settings.database_url or cluster.url_for(settings.data_dir)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Settings, "database", property(database))
        yield
    cluster.drop_all()


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
