"""The embedded database's settings, read back from SQLite itself."""

from __future__ import annotations

from pathlib import Path

from tortoise import connections

from taskdash.core.config import load_settings
from taskdash.core.db import close_database, open_database


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    database = await open_database(load_settings(data_dir=tmp_path / "data"))
    try:
        connection = connections.get("default")
        _, [mode] = await connection.execute_query("PRAGMA journal_mode")
        _, [timeout] = await connection.execute_query("PRAGMA busy_timeout")
        assert mode[0] == "wal"
        assert timeout[0] == 5000
    finally:
        await close_database(database)
