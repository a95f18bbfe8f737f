"""Open the database (SQLite, the embedded default, or PostgreSQL through asyncpg), apply the
migrations in migrations/, close it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.context import TortoiseContext
from tortoise.migrations.executor import MigrationExecutor

from taskdash.core.config import Settings


def tortoise_config(settings: Settings) -> dict[str, Any]:
    return {
        "connections": {"default": settings.database},
        "apps": {
            "taskdash": {
                "models": ["taskdash.core.models"],
                "default_connection": "default",
                "migrations": "migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def open_database(settings: Settings) -> TortoiseContext:
    """Connect and migrate. The context is the process-wide fallback, so every task sees it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = tortoise_config(settings)
    context = await Tortoise.init(config=config, _enable_global_fallback=True)
    try:
        connection = get_connection("default")
        async with migration_lock(connection):
            await MigrationExecutor(connection, config["apps"]).migrate()
    except BaseException:
        await context.close_connections()
        raise
    return context


# pg_advisory_lock key of the migrations: "taskdash" read as a 64-bit number.
MIGRATION_LOCK_KEY = int.from_bytes(b"taskdash", "big")


@contextlib.asynccontextmanager
async def migration_lock(connection: BaseDBAsyncClient) -> AsyncIterator[None]:
    """One process migrates a database at a time: replicas that start together would otherwise
    both see a migration as not applied and both run it (the second fails half-way)."""
    if connection.capabilities.dialect == "postgres":
        # A session lock, held by one pooled connection; the migrations use the others.
        async with connection.acquire_connection() as session:
            await session.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            try:
                yield
            finally:
                await session.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    elif (filename := getattr(connection, "filename", ":memory:")) != ":memory:":
        descriptor = os.open(f"{filename}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock
    else:
        yield


async def close_database(context: TortoiseContext) -> None:
    await context.close_connections()
