"""Scheduler: one loop that fires due cron slots; `fire_due(now)` is the testable step."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from taskdash.config import Settings
from taskdash.runs import RunManager


class Scheduler:
    def __init__(self, settings: Settings, runs: RunManager) -> None:
        self.settings = settings
        self.runs = runs

    async def start(self) -> None:
        """Start the loop (owned by this object)."""

    async def close(self) -> None:
        """Cancel and await the loop."""

    def wake(self) -> None:
        """A schedule changed: recompute the next due time now."""

    async def fire_due(self, now: datetime) -> list[Any]:
        return []

    async def schedule_json_for(self, task_id: UUID) -> dict[str, Any] | None:
        return None
