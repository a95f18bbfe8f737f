"""The one seam between taskdash and raw SQL: bulk writes and reads that skip model objects.

At 10,000 schedules due in the same second, building model objects costs more than the SQL
itself. The scheduler's rows go through these parameterised statements instead. Everything
they need from the ORM is read here, and only here, from a model's public metadata: the table
name, the column of each field, and each field's own conversion to and from database values,
so rows written this way are stored exactly as the ORM writes them. Placeholders follow the
connection's dialect (`?` for SQLite, asyncpg's `$n` for PostgreSQL: config.DATABASE_SCHEMES
admits no other PostgreSQL driver, psycopg's `%s` would need its own).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields import Field
from tortoise.models import Model


def quote(name: str) -> str:
    return f'"{name}"'


def placeholder(dialect: str, index: int) -> str:
    """The `index`-th (0-based) parameter marker of a statement."""
    return f"${index + 1}" if dialect == "postgres" else "?"


def driver_adapter(dialect: str) -> Callable[[Any], Any]:
    """The driver's own parameter adaptation, applied ahead of the write.

    sqlite3 calls back into Python for every datetime parameter of every row (a third of the
    insert time at 10,000 rows); adapting each distinct value once ahead avoids that.
    """
    if dialect == "sqlite":
        return lambda value: sqlite3.adapt(value, sqlite3.PrepareProtocol, value)
    return lambda value: value


class Table:
    """A model's table as raw SQL sees it: quoted column names and per-field conversions.

    Conversions are memoised per distinct value: most values in a bulk write repeat (the due
    instant, the status, the image).
    """

    def __init__(self, model: type[Model], connection: BaseDBAsyncClient) -> None:
        meta = model._meta
        self.model = model
        self.name = quote(meta.db_table)
        self.dialect = connection.capabilities.dialect
        self._fields: dict[str, Field[Any]] = dict(meta.fields_map)
        self._columns: dict[str, str] = dict(meta.fields_db_projection)
        self._adapt = driver_adapter(self.dialect)
        self._to_db: dict[tuple[str, Any], Any] = {}
        self._to_python: dict[tuple[str, Any], Any] = {}

    def column(self, name: str, alias: str = "") -> str:
        column = quote(self._columns[name])
        return f"{alias}.{column}" if alias else column

    def default(self, name: str) -> Any:
        default = self._fields[name].default
        return default() if callable(default) else default

    def to_db(self, name: str, value: Any) -> Any:
        try:
            return self._to_db[(name, value)]
        except KeyError:
            converted = self._adapt(self._fields[name].to_db_value(value, self.model))
            self._to_db[(name, value)] = converted
            return converted
        except TypeError:  # unhashable (a JSON value): convert every time
            return self._adapt(self._fields[name].to_db_value(value, self.model))

    def to_python(self, name: str, raw: Any) -> Any:
        try:
            return self._to_python[(name, raw)]
        except KeyError:
            value = self._fields[name].to_python_value(raw)
            self._to_python[(name, raw)] = value
            return value


class BulkInsert:
    """INSERT rows of one table with a single executemany; `row` converts a row ahead."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = list(columns)
        marks = ", ".join(placeholder(table.dialect, i) for i in range(len(self.columns)))
        names = ", ".join(table.column(name) for name in self.columns)
        self.sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
        self._positions = {name: index for index, name in enumerate(self.columns)}
        self._defaults = [self._default(name) for name in self.columns]

    def _default(self, name: str) -> Any:
        default = self.table.default(name)
        # None: NULL, or a required column every row gives (the INSERT refuses it if not).
        return None if default is None else self.table.to_db(name, default)

    def row(self, values: Mapping[str, Any]) -> list[Any]:
        """A row in column order; columns it leaves out take their field's default."""
        row = self._defaults.copy()
        for name, value in values.items():
            row[self._positions[name]] = self.table.to_db(name, value)
        return row

    def position(self, name: str) -> int:
        return self._positions[name]

    async def execute(self, connection: BaseDBAsyncClient, rows: list[list[Any]]) -> None:
        if rows:
            await connection.execute_many(self.sql, rows)


class BulkUpdate:
    """UPDATE table SET columns WHERE keys (all equal), once per row, in one executemany."""

    def __init__(self, table: Table, columns: Sequence[str], keys: Sequence[str]) -> None:
        self.table = table
        self.names = [*columns, *keys]
        marks = [placeholder(table.dialect, i) for i in range(len(self.names))]
        sets = ", ".join(
            f"{table.column(name)} = {mark}" for name, mark in zip(columns, marks, strict=False)
        )
        where = " AND ".join(
            f"{table.column(name)} = {mark}"
            for name, mark in zip(keys, marks[len(columns) :], strict=True)
        )
        self.sql = f"UPDATE {table.name} SET {sets} WHERE {where}"

    def row(self, values: Sequence[Any]) -> list[Any]:
        """The new values, then the keys, converted for the database."""
        return [
            self.table.to_db(name, value) for name, value in zip(self.names, values, strict=True)
        ]

    def position(self, name: str) -> int:
        return self.names.index(name)

    async def execute(self, connection: BaseDBAsyncClient, rows: list[list[Any]]) -> None:
        if rows:
            await connection.execute_many(self.sql, rows)
