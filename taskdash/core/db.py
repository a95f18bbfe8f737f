"""Open the database, apply the migrations in migrations/, close it."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise
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
    executor = MigrationExecutor(get_connection("default"), config["apps"])
    await executor.migrate()
    return context


async def close_database(context: TortoiseContext) -> None:
    await context.close_connections()
