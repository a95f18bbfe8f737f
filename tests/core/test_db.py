"""The database, on SQLite and on PostgreSQL alike (the suite runs once on each): the migrations
give the models' schema, times come back as the same UTC instants, rows written through the
bulk seam read back as the ORM wrote them, processes starting together migrate once, and the
embedded SQLite file's own settings."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tortoise import Tortoise, connections
from tortoise.exceptions import IntegrityError
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget
from tortoise.models import Model

from taskdash.core.bulk import BulkInsert, BulkUpdate, Table
from taskdash.core.config import ConfigError, load_settings
from taskdash.core.db import close_database, open_database, tortoise_config
from taskdash.core.models import Run, ScheduleSlot, ScriptType, SlotOutcome, Task
from tests.databases import database_env
from tests.support import REPO

MIGRATIONS = sorted(path.stem for path in (REPO / "migrations").glob("[0-9]*.py"))


@pytest.fixture()
async def database(tmp_path: Path) -> AsyncIterator[str]:
    """A migrated database of its own; yields its dialect."""
    context = await open_database(load_settings(data_dir=tmp_path / "data"))
    try:
        yield connections.get("default").capabilities.dialect
    finally:
        await close_database(context)


async def new_task() -> Task:
    return await Task.create(name="t", script_type=ScriptType.SHELL, script=b"echo hi")


async def columns_of(dialect: str, table: str) -> dict[str, bool]:
    """Each column of `table` and whether it takes NULL, as the database itself says."""
    connection = connections.get("default")
    if dialect == "postgres":
        _, rows = await connection.execute_query(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1",
            [table],
        )
        return {row["column_name"]: row["is_nullable"] == "YES" for row in rows}
    _, rows = await connection.execute_query(f'PRAGMA table_info("{table}")')
    return {row["name"]: not row["notnull"] and not row["pk"] for row in rows}


async def test_the_migrations_give_every_model_its_columns(database: str) -> None:
    models: list[type[Model]] = list(Tortoise.apps["taskdash"].values())
    assert len(models) >= 7
    for model in models:
        found = await columns_of(database, model._meta.db_table)
        wanted = {
            model._meta.fields_db_projection[name]: field.null
            for name, field in model._meta.fields_map.items()
            if name in model._meta.fields_db_projection
        }
        assert found == wanted, model.__name__
    _, applied = await connections.get("default").execute_query(
        "SELECT name FROM tortoise_migrations ORDER BY name"
    )
    assert [row["name"] for row in applied] == MIGRATIONS


async def test_times_come_back_as_the_same_instant_in_utc(database: str) -> None:
    task = await new_task()
    # A local time with microseconds, on the night Paris moves its clocks forward.
    local = datetime(2026, 3, 29, 3, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Paris"))
    run = await Run.create(task=task, image="i", queued_at=local)
    stored = await Run.get(id=run.id)
    assert stored.queued_at == local
    assert stored.queued_at.utcoffset() == timedelta(0)
    assert stored.queued_at.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, 15, 123456, UTC)
    [(queued_at,)] = await Run.filter(id=run.id).values_list("queued_at")
    assert queued_at == local and queued_at.utcoffset() == timedelta(0)


async def test_times_compare_to_the_microsecond(database: str) -> None:
    # In UTC, as taskdash writes every time (clock.utcnow, cron.to_utc): SQLite compares the
    # stored text, so only times written with one offset compare as instants there.
    task = await new_task()
    at = datetime(2026, 10, 25, 0, 59, 59, 999999, UTC)
    await Run.create(task=task, image="i", queued_at=at)
    tick = timedelta(microseconds=1)
    assert await Run.filter(queued_at__lt=at + tick).count() == 1
    assert await Run.filter(queued_at__lt=at).count() == 0
    assert await Run.filter(queued_at__gt=at - tick, queued_at__lte=at).count() == 1
    assert await Run.filter(queued_at=at).count() == 1


async def test_bytes_and_json_come_back_whole(database: str) -> None:
    script = bytes(range(256))
    env = {"GREETING": "grüß dich ✓", "QUOTE": 'it\'s "quoted"\n', "EMPTY": ""}
    task = await Task.create(name="t", script_type=ScriptType.PYTHON, script=script, env=env)
    stored = await Task.get(id=task.id)
    assert stored.script == script
    assert stored.env == env


async def test_bulk_rows_read_back_as_the_orm_writes_them(database: str) -> None:
    task = await new_task()
    connection = connections.get("default")
    columns = ["task_id", "slot_at", "outcome", "catch_up", "missed_before", "reason"]
    slots = BulkInsert(Table(ScheduleSlot, connection), [*columns, "recorded_at"])
    at = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    rows = [
        slots.row({"task_id": task.id, "slot_at": at + timedelta(minutes=i), "outcome": outcome})
        for i, outcome in enumerate([SlotOutcome.FIRED, SlotOutcome.SKIPPED])
    ]
    await slots.execute(connection, rows)
    stored = await ScheduleSlot.filter(task_id=task.id).order_by("slot_at")
    assert [(s.slot_at, s.outcome, s.reason, s.catch_up) for s in stored] == [
        (at, SlotOutcome.FIRED, "", False),
        (at + timedelta(minutes=1), SlotOutcome.SKIPPED, "", False),
    ]
    update = BulkUpdate(Table(ScheduleSlot, connection), ["reason"], ["task_id", "slot_at"])
    await update.execute(connection, [update.row(["late", task.id, at])])
    assert await ScheduleSlot.get(task_id=task.id, slot_at=at).values_list("reason") == ("late",)
    # Exactly once rests on this: the same (task, slot) again is refused, on every database.
    with pytest.raises(IntegrityError):
        await slots.execute(connection, [rows[0]])
    assert await ScheduleSlot.filter(task_id=task.id).count() == 2


def test_processes_starting_together_migrate_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"PATH": "/usr/bin:/bin", "TASKDASH_DATA_DIR": str(data)} | database_env(data)
    script = (
        "import asyncio\n"
        "from taskdash.core.config import load_settings\n"
        "from taskdash.core.db import close_database, open_database\n"
        "async def main():\n"
        "    await close_database(await open_database(load_settings()))\n"
        "asyncio.run(main())\n"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    for process in starts:
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///srv/taskdash/taskdash.sqlite3",
        "postgres://taskdash:secret@db.internal:5432/taskdash",
        "postgresql://taskdash@/taskdash?host=/run/postgresql",
        "asyncpg://taskdash@localhost/taskdash",
    ],
)
def test_a_database_url_names_sqlite_or_postgresql(url: str) -> None:
    assert load_settings(data_dir="/tmp/x", database_url=url).database == url


@pytest.mark.parametrize(
    "url",
    [
        "mysql://taskdash@localhost/taskdash",
        "postgresql+asyncpg://taskdash@localhost/taskdash",
        "/srv/taskdash.sqlite3",
        "postgres://taskdash@localhost:5432",
    ],
)
def test_another_database_url_stops_the_start_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError, match="TASKDASH_DATABASE_URL"):
        load_settings(data_dir="/tmp/x", database_url=url)


@pytest.mark.sqlite_only(reason="WAL and busy_timeout are SQLite's own settings")
async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(database: str) -> None:
    connection = connections.get("default")
    _, [mode] = await connection.execute_query("PRAGMA journal_mode")
    _, [timeout] = await connection.execute_query("PRAGMA busy_timeout")
    assert mode[0] == "wal"
    assert timeout[0] == 5000


@pytest.mark.parametrize("start", ["0002_schedule_slots", "0004_run_phases"])
async def test_a_database_holding_runs_upgrades_through_every_later_migration(
    tmp_path: Path, start: str
) -> None:
    """An installation upgrades with its runs in place: a column a later migration adds to a
    table that holds rows needs a default in the database, not only in Python."""
    settings = load_settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    config = tortoise_config(settings)
    context = await Tortoise.init(config=config, _enable_global_fallback=True)
    try:
        connection = connections.get("default")
        executor = MigrationExecutor(connection, config["apps"])
        await executor.migrate([MigrationTarget("taskdash", start)])
        task_id, run_id = uuid.uuid4(), uuid.uuid4()
        postgres = connection.capabilities.dialect == "postgres"

        async def insert(table: str, row: dict[str, object]) -> None:
            marks = [f"${n}" if postgres else "?" for n in range(1, len(row) + 1)]
            values = [
                v if postgres or not isinstance(v, uuid.UUID) else str(v) for v in row.values()
            ]
            columns = ", ".join(f'"{name}"' for name in row)
            await connection.execute_query(
                f"INSERT INTO {table} ({columns}) VALUES ({', '.join(marks)})", values
            )

        now = datetime.now(UTC)
        await insert(
            "task",
            {"id": task_id, "name": "old", "script_type": "shell", "script_filename": "",
             "env": "{}", "created_at": now, "updated_at": now},
        )  # fmt: skip
        await insert(
            "run",
            {"id": run_id, "task_id": task_id, "status": "succeeded", "trigger": "api",
             "image": "img", "queued_at": now, "log_bytes": 0, "log_lines": 0,
             "log_truncated": False, "catch_up": False},
        )  # fmt: skip
        await MigrationExecutor(connection, config["apps"]).migrate()
        run = await Run.get(id=run_id)
        assert (run.started_by_kind.value, run.started_by_name) == ("anonymous", "")
        assert (run.owner, run.stop_requested) == (None, False)
    finally:
        await context.close_connections()
