"""Claims and leases on a real SQLite file: a run is claimed by one replica only, and the runs
of a replica whose lease expired move to the replica that notices."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskdash.core.config import load_settings
from taskdash.core.db import close_database, open_database
from taskdash.core.models import Replica, Run, RunStatus, ScriptType, Task
from taskdash.engine.replicas import ReplicaLease
from taskdash.engine.states import RunStates
from taskdash.logs.hub import LogHub
from tests.databases import database_url

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("taskdash.core.clock.utcnow", clock)
    return clock


@pytest.fixture()
async def task(tmp_path: Path) -> AsyncIterator[Task]:
    data_dir = tmp_path / "data"
    settings = load_settings(data_dir=data_dir, database_url=database_url(data_dir))
    database = await open_database(settings)
    yield await Task.create(name="job", script_type=ScriptType.SHELL, script=b"echo hi\n")
    await close_database(database)


async def nothing() -> None:
    return None


def lease(name: str) -> ReplicaLease:
    return ReplicaLease(name, 15, on_takeover=nothing, on_lost=nothing)


async def test_a_queued_run_is_claimed_by_one_replica_only(task: Task) -> None:
    run = await Run.create(task=task)
    a, b = RunStates(LogHub(), "a"), RunStates(LogHub(), "b")

    assert await a.claim(run.id)
    assert not await b.claim(run.id)
    assert await a.claim(run.id)  # its own again: a restart of the same replica
    assert not await b.mark_running(await Run.get(id=run.id))
    assert await a.mark_running(await Run.get(id=run.id))
    assert (await Run.get(id=run.id)).owner == "a"


async def test_a_run_recorded_with_its_owner_is_not_claimed_by_another(task: Task) -> None:
    run = await Run.create(task=task, owner="a")
    assert not await RunStates(LogHub(), "b").claim(run.id)
    assert not await RunStates(LogHub(), "b").mark_running(run)


async def test_a_run_no_longer_queued_cannot_be_claimed(task: Task) -> None:
    run = await Run.create(task=task, status=RunStatus.SUCCEEDED)
    assert not await RunStates(LogHub(), "a").claim(run.id)


async def test_the_runs_of_an_expired_replica_move_to_the_one_that_notices(
    task: Task, clock: Clock
) -> None:
    await lease("a").renew()
    await lease("b").renew()
    running = await Run.create(task=task, status=RunStatus.RUNNING, owner="a")
    queued = await Run.create(task=task, owner="a")
    finished = await Run.create(task=task, status=RunStatus.FAILED, owner="a")

    assert not await lease("b").take_over_expired()  # a's lease still holds
    clock.now = NOW + timedelta(seconds=16)
    await lease("b").renew()
    assert await lease("b").take_over_expired()

    owners = {run.id: run.owner for run in await Run.all()}
    assert owners == {running.id: "b", queued.id: "b", finished.id: "a"}
    assert await Replica.filter(id="a").count() == 0
    # A replica that renews after losing its lease learns it from renew().
    assert not await lease("a").renew()
    assert await lease("a").renew()


async def test_a_replica_starting_claims_running_runs_nobody_owns(task: Task) -> None:
    legacy = await Run.create(task=task, status=RunStatus.RUNNING)
    other = await Run.create(task=task, status=RunStatus.RUNNING, owner="b")
    holder = lease("a")
    await holder.open()
    try:
        assert (await Run.get(id=legacy.id)).owner == "a"
        assert (await Run.get(id=other.id)).owner == "b"
    finally:
        await holder.close()
