"""Model definitions that the migrations can carry."""

from __future__ import annotations

from tortoise.models import Model

from taskdash.core import models


def test_no_table_description_holds_a_semicolon() -> None:
    # Tortoise's SQLite schema editor splits a CREATE TABLE on ';' in its comment.
    tables = [
        value
        for value in vars(models).values()
        if isinstance(value, type) and issubclass(value, Model) and value is not Model
    ]
    assert len(tables) >= 7
    for table in tables:
        assert ";" not in (table.__doc__ or ""), table.__name__
