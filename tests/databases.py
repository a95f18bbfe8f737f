"""Which database the tests run on: a SQLite file in each data dir (the default), or, with
TASKDASH_TEST_DATABASE=postgres, a fresh PostgreSQL database per data dir on the cluster at
TASKDASH_TEST_POSTGRES_URL (`scripts/test.sh` starts a throwaway one for its second pass).

A data dir stands for one installation, so everything given the same data dir (a server, its
restart, a replica beside it, the CLI) shares its database, as they share the SQLite file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

KIND = os.environ.get("TASKDASH_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
ON_POSTGRES = KIND == "postgres"
if KIND not in {"sqlite", "postgres"}:
    raise RuntimeError(f"TASKDASH_TEST_DATABASE={KIND}: expected sqlite or postgres")


def run_async(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run a coroutine to completion from sync code, also inside a running event loop (the
    async tests): in a thread with a loop of its own."""
    result: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        async def call() -> T:
            return await function(*args)

        try:
            result.append(asyncio.run(call()))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=work, name="test-database")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


class PostgresCluster:
    """Creates a database per data dir, on first use, and drops them all at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        # Unique per test session, so a cluster that outlives one never hands out old data.
        self.session = secrets.token_hex(4)
        self.created: dict[str, str] = {}
        self._lock = threading.Lock()

    def name_for(self, data_dir: Path) -> str:
        key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
        return f"td_{self.session}_{key}"

    def url_of(self, name: str) -> str:
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{name}"))

    def url_for(self, data_dir: Path) -> str:
        name = self.name_for(data_dir)
        with self._lock:
            if name not in self.created:
                run_async(self._execute, f'CREATE DATABASE "{name}"')
                self.created[name] = self.url_of(name)
            return self.created[name]

    def check(self) -> str | None:
        """None when the cluster answers, else why not."""
        if not self.admin_url:
            return "TASKDASH_TEST_POSTGRES_URL is not set"
        try:
            run_async(self._execute, "SELECT 1")
        except Exception as exc:  # OSError, a timeout, or asyncpg's own (authentication, ...)
            return f"{self.admin_url} does not answer: {type(exc).__name__}: {exc}"
        return None

    def drop_all(self) -> None:
        """Drop every database this session created (servers left connected are cut off)."""
        for name in list(self.created):
            run_async(self._execute, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            del self.created[name]

    async def _execute(self, sql: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()


async def on_postgres(url: str, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    try:
        return [tuple(row) for row in await connection.fetch(sql, *params)]
    finally:
        await connection.close()


CLUSTER = PostgresCluster(os.environ.get("TASKDASH_TEST_POSTGRES_URL", "")) if ON_POSTGRES else None


def database_url(data_dir: Path) -> str | None:
    """The TASKDASH_DATABASE_URL of the installation in `data_dir`; None on SQLite (the file
    in the data dir)."""
    return CLUSTER.url_for(data_dir) if CLUSTER is not None else None


def sqlite_file(data_dir: Path) -> Path:
    return data_dir / "taskdash.sqlite3"


def query(data_dir: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Run `sql` (`?` placeholders) on the database of `data_dir`, from outside its server, as
    another process would; the rows it returns. Times are ISO text on SQLite, datetimes on
    PostgreSQL: pass them as aware datetimes."""
    url = database_url(data_dir)
    if url is None:
        with sqlite3.connect(sqlite_file(data_dir), timeout=10) as db:
            adapted = [p.isoformat(" ") if hasattr(p, "isoformat") else p for p in params]
            rows = db.execute(sql, adapted).fetchall()
        db.close()
        return rows
    numbered = iter(range(1, sql.count("?") + 1))
    marked = re.sub(r"\?", lambda _: f"${next(numbered)}", sql)
    return run_async(on_postgres, url, marked, params)


def column_names(data_dir: Path, table: str) -> list[str]:
    """The columns of `table` in the database of `data_dir`, in their order."""
    if database_url(data_dir) is None:
        return [str(row[1]) for row in query(data_dir, f'PRAGMA table_info("{table}")')]
    rows = query(
        data_dir,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        table,
    )
    return [str(row[0]) for row in rows]


def stored_bytes(data_dir: Path) -> bytes:
    """All that the database of `data_dir` holds, to look for what must not be stored in the
    clear: the SQLite files as they are on disk, or every value of every PostgreSQL table."""
    url = database_url(data_dir)
    if url is None:
        files = [sqlite_file(data_dir), data_dir / "taskdash.sqlite3-wal"]
        return b"".join(path.read_bytes() for path in files if path.exists())
    tables = query(
        data_dir,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    values = [
        value if isinstance(value, bytes) else str(value).encode()
        for (table,) in tables
        for row in query(data_dir, f'SELECT * FROM "{table}"')
        for value in row
    ]
    return b"\0".join(values)


def database_env(data_dir: Path) -> dict[str, str]:
    """The variables a process for the installation in `data_dir` needs to find its database."""
    url = database_url(data_dir)
    return {"TASKDASH_DATABASE_URL": url} if url else {}
