"""Retention on a real SQLite file with a set clock, real log files, and real requirements
images on the Docker engine; then a real server pruning on its own schedule."""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tortoise import connections

from taskdash.core.config import Settings, load_settings
from taskdash.core.db import close_database, open_database
from taskdash.core.models import (
    Run,
    RunStatus,
    ScheduleSlot,
    ScriptType,
    SlotOutcome,
    Task,
)
from taskdash.engine.build_spec import requirements_key
from taskdash.engine.docker import DockerEngine
from taskdash.logs.hub import LogHub
from taskdash.logs.store import LogStore
from taskdash.scheduling.retention import Retention
from taskdash.services import EngineDepsImages
from tests.databases import query
from tests.support import LiveServer, create_task, wait_for, wait_run

# Ahead of the real clock, so images made by the engine now are 60 days old at NOW.
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=60)
DAY = timedelta(days=1)
NO_RULES = {"retention_days": 0, "keep_runs_per_task": 0, "deps_unused_days": 0}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(NOW)
    monkeypatch.setattr("taskdash.core.clock.utcnow", clock)
    return clock


@pytest.fixture()
async def settings(tmp_path: Path) -> AsyncIterator[Settings]:
    settings = load_settings(
        data_dir=tmp_path / "data", instance_id=f"test-retention-{uuid.uuid4().hex[:12]}"
    )
    database = await open_database(settings)
    yield settings
    await close_database(database)


@pytest.fixture()
def logs(settings: Settings) -> LogStore:
    return LogStore(settings.logs_dir, settings.log_max_bytes, LogHub())


def retention_with(settings: Settings, logs: LogStore, **rules: Any) -> Retention:
    batch = rules.pop("batch", 500)
    return Retention(settings.model_copy(update=NO_RULES | rules), logs, batch=batch)


async def make_task(name: str = "job", **fields: Any) -> Task:
    fields.setdefault("script_type", ScriptType.SHELL)
    return await Task.create(name=name, script=b"echo hi\n", **fields)


async def add_runs(
    task: Task,
    logs: LogStore,
    ages_in_days: list[float],
    status: RunStatus = RunStatus.SUCCEEDED,
    **fields: Any,
) -> list[Run]:
    """Runs queued that many days before NOW, each with a log file; the newest becomes the
    task's latest run."""
    runs = [
        Run(id=uuid.uuid4(), task=task, status=status, queued_at=NOW - age * DAY, **fields)
        for age in ages_in_days
    ]
    await Run.bulk_create(runs, batch_size=1000)
    for run in runs:
        logs.path_for(run.id).write_bytes(f"line of {run.id}\n".encode())
    newest = min(runs, key=lambda run: NOW - run.queued_at)
    await Task.filter(id=task.id).update(last_run_id=newest.id)
    return runs


async def ages_left(task: Task) -> list[float]:
    runs = await Run.filter(task_id=task.id).order_by("queued_at")
    return [round((NOW - run.queued_at) / DAY, 3) for run in runs]


# runs and their logs --------------------------------------------------------------------------


async def test_runs_older_than_the_limit_go_with_their_log_files(
    settings: Settings, logs: LogStore, clock: Clock
) -> None:
    task = await make_task()
    runs = await add_runs(task, logs, [100, 50, 30.5, 29.5, 1])
    other = await make_task("other")
    await add_runs(other, logs, [45, 2])

    done = await retention_with(settings, logs, retention_days=30).run_once(NOW)

    assert await ages_left(task) == [29.5, 1]
    assert await ages_left(other) == [2]
    pruned = [run for run in runs if (NOW - run.queued_at) > 30 * DAY]
    assert all(not logs.path_for(run.id).exists() for run in pruned)
    assert all(logs.path_for(run.id).exists() for run in runs if run not in pruned)
    assert (done.pruned.runs, done.pruned.log_files) == (4, 4)
    assert done.pruned.log_bytes == 4 * len(f"line of {runs[0].id}\n")


async def test_the_pass_measures_what_is_left(
    settings: Settings, logs: LogStore, clock: Clock
) -> None:
    task = await make_task()
    await add_runs(task, logs, [100, 10, 1])
    retention = retention_with(settings, logs, retention_days=30)

    await retention.run_once(NOW)

    assert retention.storage is not None
    assert (retention.storage.log_files, retention.storage.measured_at) == (2, NOW)
    assert retention.storage.log_bytes == 2 * len(f"line of {task.id}\n")
    assert (retention.passes, retention.since_start.runs) == (1, 1)


async def test_keep_n_keeps_the_newest_n_of_each_task(
    settings: Settings, logs: LogStore, clock: Clock
) -> None:
    crowded = await make_task("crowded")
    await add_runs(crowded, logs, [float(age) for age in range(1, 11)])
    small = await make_task("small")
    await add_runs(small, logs, [300, 200])

    done = await retention_with(settings, logs, keep_runs_per_task=3).run_once(NOW)

    assert await ages_left(crowded) == [3, 2, 1]
    assert await ages_left(small) == [300, 200]
    assert done.pruned.runs == 7


async def test_the_latest_run_and_active_runs_survive_however_old(
    settings: Settings, logs: LogStore, clock: Clock
) -> None:
    task = await make_task()
    await add_runs(task, logs, [900, 800], status=RunStatus.FAILED)
    await add_runs(task, logs, [700], status=RunStatus.RUNNING)
    await add_runs(task, logs, [600], status=RunStatus.QUEUED)
    [latest] = await add_runs(task, logs, [500])

    await retention_with(settings, logs, retention_days=1, keep_runs_per_task=1).run_once(NOW)

    left = await Run.filter(task_id=task.id).order_by("queued_at")
    assert [(run.status, run.id == latest.id) for run in left] == [
        (RunStatus.RUNNING, False),
        (RunStatus.QUEUED, False),
        (RunStatus.SUCCEEDED, True),
    ]
    assert all(logs.path_for(run.id).exists() for run in left)


async def test_pages_that_end_among_runs_queued_at_the_same_instant_miss_none(
    settings: Settings, logs: LogStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskdash.scheduling.retention.PAGE", 7)
    tasks = [await make_task(f"t{i}") for i in range(3)]
    for task in tasks:
        # The latest run first: at the same instant, the id decides the order of the rest.
        [latest] = await add_runs(task, logs, [40])
        await add_runs(task, logs, [40] * 4, status=RunStatus.QUEUED)
        await add_runs(task, logs, [40] * 20)
        await Task.filter(id=task.id).update(last_run_id=latest.id)

    done = await retention_with(settings, logs, retention_days=30, batch=5).run_once(NOW)

    assert done.pruned.runs == 3 * 20
    for task in tasks:
        left = await Run.filter(task_id=task.id)
        assert sorted(run.status for run in left) == [RunStatus.QUEUED] * 4 + [RunStatus.SUCCEEDED]
        assert (await Task.get(id=task.id)).last_run_id in {run.id for run in left}


async def test_a_rule_set_to_zero_prunes_nothing(
    settings: Settings, logs: LogStore, clock: Clock
) -> None:
    task = await make_task()
    await add_runs(task, logs, [float(age) for age in range(100, 110)])

    done = await retention_with(settings, logs).run_once(NOW)

    assert len(await ages_left(task)) == 10
    assert done.pruned.runs == 0


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_loop_passes_at_open_and_measures_again_when_asked(
    settings: Settings, logs: LogStore, clock: Clock
) -> None:
    task = await make_task()
    await add_runs(task, logs, [1])
    retention = retention_with(settings, logs, retention_every_seconds=3600)

    await retention.open()
    try:
        await until(lambda: retention.passes == 1)
        assert retention.storage is not None and retention.storage.log_files == 1
        await add_runs(task, logs, [0.5])
        clock.now += timedelta(minutes=6)
        retention.refresh_storage(older_than=timedelta(minutes=5))
        await until(lambda: retention.storage is not None and retention.storage.log_files == 2)
        assert retention.storage.measured_at == clock.now
        assert retention.passes == 1  # measured again, not pruned again
    finally:
        await retention.close()


# slot records ---------------------------------------------------------------------------------


async def test_decided_slot_records_older_than_30_days_go_waiting_ones_stay(
    settings: Settings, logs: LogStore, clock: Clock
) -> None:
    task = await make_task()
    for age, outcome in [
        (40, SlotOutcome.FIRED),
        (35, SlotOutcome.MISSED),
        (31, SlotOutcome.SKIPPED),
        (39, SlotOutcome.WAITING),
        (29, SlotOutcome.FIRED),
    ]:
        slot_at = NOW - age * DAY
        await ScheduleSlot.create(task=task, slot_at=slot_at, outcome=outcome, recorded_at=slot_at)

    # Slot records are pruned whatever the runs' rules say.
    done = await retention_with(settings, logs).run_once(NOW)

    left = await ScheduleSlot.filter(task_id=task.id).order_by("slot_at")
    assert [(round((NOW - s.slot_at) / DAY), s.outcome) for s in left] == [
        (39, SlotOutcome.WAITING),
        (29, SlotOutcome.FIRED),
    ]
    assert done.pruned.slots == 3


# small statements -----------------------------------------------------------------------------


def statements_rows(sql: list[str], table: str) -> list[int]:
    """The ids each DELETE of `table` named, statement by statement."""
    deletes = [s for s in sql if s.startswith(f'DELETE FROM "{table}"')]
    return [len(re.findall(r"'[^']*'|\b\d+\b", s.split(" IN (", 1)[1])) for s in deletes]


@pytest.mark.sqlite_only(
    reason="it traces the statements on SQLite's one connection, which the app's queries share "
    "(on PostgreSQL they go through a pool, side by side)"
)
async def test_deletes_go_in_small_statements_with_other_queries_in_between(
    settings: Settings, logs: LogStore, clock: Clock
) -> None:
    tasks = [await make_task(f"t{i}") for i in range(3)]
    for task in tasks:
        await add_runs(task, logs, [40 + i / 100 for i in range(350)])
    slots = [
        ScheduleSlot(task=tasks[0], slot_at=NOW - 40 * DAY - i * timedelta(minutes=1),
                     outcome=SlotOutcome.FIRED)
        for i in range(250)
    ]  # fmt: skip
    await ScheduleSlot.bulk_create(slots)
    executed: list[str] = []
    connection = connections.get("default")._connection
    await connection.set_trace_callback(executed.append)
    stop = asyncio.Event()

    async def another_request() -> None:
        while not stop.is_set():
            await Task.filter(name="t0").count()

    other = asyncio.create_task(another_request())
    try:
        done = await retention_with(settings, logs, retention_days=30, batch=100).run_once(NOW)
    finally:
        stop.set()
        await other
        await connection.set_trace_callback(None)

    # 3 x 350 runs, each task's latest kept: 1,047 rows, 11 statements of at most 100.
    run_deletes = statements_rows(executed, "run")
    assert sum(run_deletes) == done.pruned.runs == 3 * 349
    assert max(run_deletes) == 100 and len(run_deletes) == 11
    assert statements_rows(executed, "schedule_slot") == [100, 100, 50]
    assert (done.statements, done.largest_statement) == (14, 100)
    # Each delete is its own transaction, and the other request got in between every two.
    assert not any(s.startswith("BEGIN") for s in executed)
    writes = [i for i, s in enumerate(executed) if s.startswith("DELETE")]
    for before, after in itertools.pairwise(writes):
        assert any(s.startswith('SELECT COUNT(*) FROM "task"') for s in executed[before:after])
    assert await Run.all().count() == 3


# requirements images --------------------------------------------------------------------------


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag).returncode == 0


@pytest.fixture()
def make_image(docker_engine: None, settings: Settings) -> Iterator[Callable[..., str]]:
    """Tiny images committed from a container of the shell image (offline), removed after."""
    container = f"taskdash-retention-test-{uuid.uuid4().hex[:12]}"
    created = docker("create", "--name", container, settings.shell_image, "true")
    assert created.returncode == 0, created.stderr
    made: list[str] = []

    def make(tag: str, instance: str = settings.instance) -> str:
        made.append(tag)
        label = f"LABEL taskdash.instance={instance}"
        done = docker("commit", "--change", label, container, tag)
        assert done.returncode == 0, done.stderr
        return tag

    yield make
    if made:
        docker("rmi", "-f", *made)
    docker("rm", "-f", container)


@pytest.fixture()
async def engine(docker_engine: None) -> AsyncIterator[DockerEngine]:
    engine = DockerEngine()
    await engine.open()
    yield engine
    await engine.close()


async def test_requirements_images_unused_past_the_limit_go_used_ones_stay(
    settings: Settings,
    logs: LogStore,
    clock: Clock,
    engine: DockerEngine,
    make_image: Callable[..., str],
) -> None:
    def test_tag() -> str:
        return f"taskdash/deps:test-{uuid.uuid4()}"

    # Used yesterday by a run that recorded the image's tag.
    by_tag = make_image(test_tag())
    await add_runs(await make_task("by tag", image=by_tag), logs, [1], image=by_tag)
    # Used yesterday by a run that recorded its base image: the tag is the build's choice.
    requirements = f"tdretention=={uuid.uuid4().int % 10**9}\n"
    base = await engine.image_info(settings.shell_image)
    assert base is not None
    mapped = make_image(f"taskdash/deps:{requirements_key(str(base['Id']), requirements)}")
    python = await make_task(
        "by requirements",
        script_type=ScriptType.PYTHON,
        image=settings.shell_image,
        requirements=requirements,
    )
    await add_runs(python, logs, [1], image=settings.shell_image)
    # Last used 40 days ago; never used at all; another installation's.
    stale = make_image(test_tag())
    await add_runs(await make_task("stale", image=stale), logs, [40], image=stale)
    unused = make_image(test_tag())
    foreign = make_image(test_tag(), instance=f"{settings.instance}-other")
    images = EngineDepsImages(engine, settings)

    off = Retention(settings.model_copy(update=NO_RULES), logs, images)
    assert (await off.run_once(NOW)).pruned.images == 0
    assert all(map(image_exists, [by_tag, mapped, stale, unused, foreign]))
    assert off.storage is not None and off.storage.deps is not None
    assert off.storage.deps.images == 4  # this installation's only

    rules = NO_RULES | {"deps_unused_days": 30}
    retention = Retention(settings.model_copy(update=rules), logs, images)
    done = await retention.run_once(NOW)

    assert [image_exists(tag) for tag in (by_tag, mapped, stale, unused, foreign)] == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert done.pruned.images == 2
    assert retention.storage is not None and retention.storage.deps is not None
    assert retention.storage.deps.images == 2
    assert retention.storage.deps.size >= 2 * int(base["Size"])
    assert retention.storage.deps.own_size < 2 * 1024 * 1024  # an empty commit on the base


# a real server --------------------------------------------------------------------------------


def backdate(data_dir: Path, run_id: str, days: int) -> None:
    """Move a run's queued time back, writing the server's database as another process."""
    query(
        data_dir,
        "UPDATE run SET queued_at = ? WHERE id = ?",
        datetime.now(UTC) - days * DAY,
        run_id,
    )


def test_a_server_prunes_on_its_own_schedule(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(retention_every_seconds="0.3", retention_days="30")
    with live.client() as client:
        created = create_task(client, "echo first\n", kind="sh")
        task_id, first = created["task_id"], created["run_id"]
        wait_run(client, task_id, first)
        second = client.put(f"/task/{task_id}").json()["run_id"]
        wait_run(client, task_id, second)
        log_file = live.data_dir / "logs" / f"{first}.log"
        assert log_file.exists()
        passes = client.get("/storage").json()["retention"]["passes"]

        backdate(live.data_dir, first, days=31)

        def pruned_one() -> dict[str, Any]:
            retention: dict[str, Any] = client.get("/storage").json()["retention"]
            return retention if retention["pruned_since_start"]["runs"] else {}

        retention = wait_for(pruned_one, timeout=30, what="a pass to prune the backdated run")
        assert client.get(f"/task/{task_id}/runs/{first}").status_code == 404
        assert not log_file.exists()
        assert client.get(f"/task/{task_id}/runs/{second}").status_code == 200
        assert retention["passes"] > passes
        assert retention["pruned_since_start"]["runs"] == 1
        assert retention["pruned_since_start"]["log_files"] == 1
        assert retention["rules"]["retention_days"] == 30
