"""The one clock seam: everything that stores or compares a time asks `utcnow()` here.

Callers use `clock.utcnow()` (not a `from` import), so a test that sets the time patches one
attribute and every module sees it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
