"""The engine tests' session-long run: a script silent for more than six minutes.

aiohttp's default ClientTimeout has total=300 s, and aiodocker's defaults decide which calls
keep a limit: a run silent for longer than that is where a limit on a long poll (the container's
wait, its output stream) or on the SSE stream would show. Six minutes is too long to wait for in
a test, so the run starts with the first engine test (this fixture, autouse) and is checked by
tests/engine/test_zz_long_silence.py, which the hook below moves to the end of the whole session:
the rest of the suite runs meanwhile, and the check waits only for what is left of the silence.
Nothing starts when that test is not collected (e.g. `pytest -k`).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.conftest import remove_containers, require
from tests.support import LiveServer, create_task

CHECK = "tests/engine/test_zz_long_silence.py"
SILENCE_SECONDS = 370.0  # past aiohttp's default total of 300 s
SILENT_SCRIPT = (
    "import time\n"
    "print('before the silence', flush=True)\n"
    f"time.sleep({SILENCE_SECONDS})\n"
    "print('after the silence', flush=True)\n"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    late = [item for item in items if item.nodeid.startswith(CHECK)]
    if late:
        items[:] = [item for item in items if not item.nodeid.startswith(CHECK)] + late


@dataclass
class Follower:
    """One SSE connection, read in a thread for as long as the run lasts."""

    url: str
    events: list[tuple[str, str, str]] = field(default_factory=list)  # event, id, data
    comments: int = 0
    failure: str | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._read, name="long-silence-sse", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        # Keep-alives come every 15 s, so a read limit of 90 s never cuts a healthy stream.
        timeout = httpx.Timeout(30.0, read=90.0)
        try:
            with httpx.stream("GET", self.url, timeout=timeout) as response:
                event = {"event": "message", "id": "", "data": ""}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.comments += 1
                    elif line:
                        name, _, value = line.partition(":")
                        event[name] = value.removeprefix(" ")
                    elif event["data"] or event["event"] != "message":
                        self.events.append((event["event"], event["id"], event["data"]))
                        if event["event"] == "end":
                            return
                        event = {"event": "message", "id": "", "data": ""}
            self.failure = "the server closed the stream before its end"
        except httpx.HTTPError as exc:
            self.failure = f"{type(exc).__name__}: {exc}"


@dataclass
class LongSilence:
    server: LiveServer
    task_id: str
    run_id: str
    started: float
    follower: Follower


@pytest.fixture(scope="session", autouse=True)
def long_silence(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LongSilence | None]:
    if not any(item.nodeid.startswith(CHECK) for item in request.session.items):
        yield None
        return
    request.getfixturevalue("docker_engine")
    # An instance of its own: LiveServer names it after the data folder, and the session's
    # `server` (also in a folder named data) would remove this run's container as an orphan.
    instance = f"test-long-silence-{os.getpid()}"
    server = LiveServer(
        tmp_path_factory.mktemp("long-silence") / "silent", env={"TASKDASH_INSTANCE_ID": instance}
    ).start()
    try:
        with server.client() as http:
            created = create_task(http, SILENT_SCRIPT, name="long silence")
        follower = Follower(f"{server.base_url}/task/{created['task_id']}/logs/stream")
        follower.start()
        yield LongSilence(server, created["task_id"], created["run_id"], time.monotonic(), follower)
    finally:
        server.stop()
        remove_containers(server)


def swarm_state() -> tuple[str, bool]:
    """The engine's swarm state (`inactive`, `active`, ...) and whether it is a manager."""
    found = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    state, _, manager = found.stdout.strip().partition(" ")
    return state, manager == "true"


@pytest.fixture(scope="session")
def swarm_manager(docker_engine: None) -> None:
    """The shared engine as a one-node swarm's manager (it stays one after the session)."""
    state, manager = swarm_state()
    if state == "inactive":
        init = subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        require(init.returncode == 0, f"`docker swarm init` failed: {init.stderr.strip()}")
        state, manager = swarm_state()
    require(
        state == "active" and manager,
        f"the Docker engine is not a swarm manager (swarm state {state!r})",
    )
