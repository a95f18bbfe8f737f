"""Two replicas on one database and one data folder, as real server processes on the real
engine: each run is supervised by the replica that claimed it, a replica that starts leaves
the other's runs alone, a stop through either replica works, and when one is killed the other
takes over its runs once its lease has expired and finishes them whole."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.databases import query
from tests.support import LiveServer, create_task, get_run, logs, replica_server, wait_for, wait_run

LEASE_SECONDS = 3

# Prints a numbered line every 0.1 s for `lines` lines.
COUNTER = (
    "import time\n"
    "for i in range(1, {lines} + 1):\n"
    "    print(f'n {{i}}', flush=True)\n"
    "    time.sleep(0.1)\n"
)


def numbers(text: str) -> list[int]:
    return [int(line[2:]) for line in text.splitlines() if line.startswith("n ")]


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "shared"


def replica(data_dir: Path, name: str, **env: str) -> LiveServer:
    return replica_server(data_dir, name, LEASE_SECONDS, **env)


def start_counting(client: httpx.Client, lines: int) -> dict[str, str]:
    """A task whose run prints `lines` numbered lines, once that run is running."""
    created = create_task(client, COUNTER.format(lines=lines))
    wait_run(client, created["task_id"], created["run_id"], status={"running"})
    return created


@pytest.fixture()
def pair(docker_engine: None, data_dir: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    first = replica(data_dir, "replica-a").start()
    second = replica(data_dir, "replica-b").start()
    yield first, second
    stop_all((first, second))
    instance = first.environment()["TASKDASH_INSTANCE_ID"]
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=taskdash.instance={instance}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


def stop_all(servers: Iterable[LiveServer | None]) -> None:
    for server in servers:
        if server is not None:
            server.stop()


def test_a_replica_that_starts_leaves_the_others_runs_alone(
    data_dir: Path, docker_engine: None
) -> None:
    first = replica(data_dir, "replica-a").start()
    second = None
    try:
        with first.client() as http:
            created = start_counting(http, 30)
            # Before replicas, a second process marked every running run `error` at start.
            second = replica(data_dir, "replica-b").start()
            run = wait_run(http, created["task_id"], created["run_id"], timeout=60)
            assert run["status"] == "succeeded", run
            assert numbers(logs(http, created["task_id"])) == list(range(1, 31))
        with second.client() as http:
            runs = http.get(f"/task/{created['task_id']}/runs").json()
            assert [r["status"] for r in runs] == ["succeeded"]  # run once, not relaunched
    finally:
        stop_all((first, second))


def test_a_run_supervised_by_one_replica_stops_through_the_other(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    with first.client() as a, second.client() as b:
        created = start_counting(a, 600)
        response = b.post(f"/task/{created['task_id']}/stop")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "stopped"
        assert get_run(a, created["task_id"], created["run_id"])["status"] == "stopped"


def test_a_task_supervised_by_one_replica_is_deleted_through_the_other(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    with first.client() as a, second.client() as b:
        created = start_counting(a, 600)
        assert b.delete(f"/task/{created['task_id']}").status_code in (200, 204)
        assert a.get(f"/task/{created['task_id']}").status_code == 404
    instance = first.environment()["TASKDASH_INSTANCE_ID"]
    wait_for(
        lambda: (
            not subprocess.run(
                ["docker", "ps", "-q", "--filter", f"label=taskdash.run_id={created['run_id']}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        ),
        timeout=30,
        what=f"run container of {instance} gone",
    )


def test_the_runs_of_a_killed_replica_are_finished_whole_by_the_other(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    with first.client() as a:
        created = [create_task(a, COUNTER.format(lines=80)) for _ in range(3)]
        for made in created:
            wait_run(a, made["task_id"], made["run_id"], status={"running"})
    first.kill()
    with second.client() as b:
        for made in created:
            run = wait_run(b, made["task_id"], made["run_id"], timeout=LEASE_SECONDS * 10 + 30)
            assert run["status"] == "succeeded", run
            assert numbers(logs(b, made["task_id"])) == list(range(1, 81))
            runs = b.get(f"/task/{made['task_id']}/runs").json()
            assert len(runs) == 1  # finished, not run again


def test_unclaimed_queued_runs_start_exactly_once_when_two_replicas_start_together(
    data_dir: Path, docker_engine: None
) -> None:
    first = replica(data_dir, "replica-a").start()
    with first.client() as http:
        made = create_task(http, "print('once')\n")
        wait_run(http, made["task_id"], made["run_id"])
    first.stop()
    # Twenty queued runs no replica has claimed (as a replica that died before claiming
    # them leaves them); both replicas see them at start and race for each.
    queued = [uuid.uuid4() for _ in range(20)]
    for run_id in queued:
        query(
            data_dir,
            'INSERT INTO run (id, task_id, status, "trigger", image, queued_at, log_bytes, '
            "log_lines, log_truncated, catch_up, started_by_kind, started_by_name, "
            "stop_requested) "
            'SELECT ?, task_id, ?, "trigger", image, queued_at, 0, 0, log_truncated, catch_up, '
            "started_by_kind, started_by_name, stop_requested FROM run WHERE id = ?",
            str(run_id),
            "queued",
            made["run_id"],
        )
    # One run at a time each: runs wait claimed but queued, the window a second claim hits.
    both = [replica(data_dir, name, TASKDASH_MAX_CONCURRENT_RUNS="1") for name in ("a", "b")]
    for server in both:
        server.launch()
    for server in both:
        server.wait_ready()
    try:
        with both[0].client() as http:
            for run_id in queued:
                run = wait_run(http, made["task_id"], str(run_id), timeout=120)
                assert run["status"] == "succeeded", run
                # Run twice, its log would say so twice.
                assert logs(http, made["task_id"], str(run_id)).splitlines() == ["once"]
    finally:
        stop_all(both)


def test_a_follower_on_the_other_replica_sees_the_run_live_and_whole(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    with first.client() as a, second.client() as b:
        created = start_counting(a, 40)
        received: list[int] = []
        live_while_running = False
        ended = ""
        url = f"/task/{created['task_id']}/logs/stream"
        with b.stream("GET", url, params={"run_id": created["run_id"]}, timeout=60) as stream:
            event = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "line":
                    received.append(int(line[8:]))
                    if not live_while_running and len(received) == 5:
                        status = get_run(a, created["task_id"], created["run_id"])["status"]
                        live_while_running = status == "running"
                elif line.startswith("data: ") and event == "end":
                    ended = line[6:]
                    break
    assert received == list(range(1, 41))  # no gap, no line twice
    assert live_while_running
    assert '"status": "succeeded"' in ended
