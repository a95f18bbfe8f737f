"""Three replicas on one database (SQLite on the first pass, PostgreSQL on the second), as real
server processes: 200 runs created through all three and 10 schedule slots falling due while
one replica is killed with -9 half-way. Afterwards every run happened exactly once with its whole
log, every slot fired once with one run, and the dead replica's runs were finished by the
others."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.databases import query
from tests.support import create_task, logs, replica_server, wait_for, wait_run

RUNS = 200
SCHEDULED = 10
LEASE_SECONDS = 3


def active_runs_of(data_dir: Path, owner: str) -> int:
    rows = query(
        data_dir,
        "SELECT COUNT(*) FROM run WHERE owner = ? AND status IN ('queued', 'running')",
        owner,
    )
    return int(rows[0][0])


def script_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("[taskdash] ")]


def next_minute() -> datetime:
    now = datetime.now(UTC)
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


def test_three_replicas_one_killed_every_run_and_slot_happens_once(
    docker_engine: None, tmp_path: Path
) -> None:
    data_dir = tmp_path / "cluster"
    servers = [replica_server(data_dir, f"replica-{n}", LEASE_SECONDS) for n in "abc"]
    for server in servers:
        server.launch()
    for server in servers:
        server.wait_ready()
    clients = [server.client() for server in servers]
    try:
        scheduled = [create_task(clients[0], f"print('scheduled {n}')\n") for n in range(SCHEDULED)]
        for made in scheduled:
            wait_run(clients[0], made["task_id"], made["run_id"])
            response = clients[0].post(
                f"/task/{made['task_id']}/schedule", data={"cron_expression": "* * * * *"}
            )
            assert response.status_code in (200, 201), response.text
        due = next_minute()

        created: list[tuple[dict[str, str], str]] = []
        turn = itertools.cycle(range(3))
        for n in range(RUNS):
            index = next(turn)
            if n == RUNS // 2:
                # Kill replica c while it holds runs, then go on through the other two.
                wait_for(lambda: active_runs_of(data_dir, "replica-c") > 0, what="c busy")
                servers[2].kill()
            if index == 2 and n >= RUNS // 2:
                index = n % 2
            text = f"run {n}"
            created.append((create_task(clients[index], f"print({text!r})\n"), text))

        survivor = clients[0]
        for made, text in created:
            run = wait_run(survivor, made["task_id"], made["run_id"], timeout=300)
            assert run["status"] == "succeeded", run
            # A run c was preparing when it died says so, and starts again from the beginning.
            assert script_lines(logs(survivor, made["task_id"])) == [text]
            runs = survivor.get(f"/task/{made['task_id']}/runs").json()
            assert len(runs) == 1, runs  # started once, never again
        assert active_runs_of(data_dir, "replica-c") == 0  # taken over and finished

        wait_for(
            lambda: datetime.now(UTC) > due + timedelta(seconds=2), timeout=90, what="the slot"
        )
        for made in scheduled:
            assert_fired_once(survivor, data_dir, made["task_id"], due)
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()


def assert_fired_once(http: httpx.Client, data_dir: Path, task_id: str, due: datetime) -> None:
    """The slot at `due` was recorded once, fired, and its one run succeeded."""

    def fired() -> list[tuple[object, ...]]:
        return query(
            data_dir,
            "SELECT outcome, run_id FROM schedule_slot WHERE task_id = ? AND slot_at = ?",
            task_id,
            due,
        )

    slots = wait_for(fired, timeout=30, what=f"the slot of {task_id} at {due}")
    assert len(slots) == 1 and slots[0][0] == "fired", slots
    run_id = str(slots[0][1])
    run = wait_run(http, task_id, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    by_slot = Counter(
        r["run_id"] for r in http.get(f"/task/{task_id}/runs").json() if r["trigger"] == "schedule"
    )
    assert by_slot[run_id] == 1
