"""A task's schedule: set, change, pause, remove, and what to show of it.

One rule for every surface: a field left out keeps its current value, and a new schedule takes
the defaults (the installation's time zone, enabled, overlap `skip`). So saving the cron of a
paused schedule keeps it paused; pausing and resuming is a change of `enabled` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from taskdash.core import clock
from taskdash.core.config import Settings
from taskdash.core.errors import BadRequest, Conflict, NotFound
from taskdash.core.models import OverlapPolicy, Schedule, ScheduleSlot, Task
from taskdash.scheduling.cron import (
    CronSpec,
    next_fire_time,
    next_fire_times,
    parse_cron,
    parse_timezone,
)
from taskdash.scheduling.waiting import cancel_waiting

SHOWN_FIRE_TIMES = 5
SHOWN_SLOTS = 5


@dataclass(frozen=True)
class ScheduleChange:
    """The fields a request sets; None leaves a field as it is."""

    cron_expression: str | None = None
    timezone: str | None = None
    enabled: bool | None = None
    overlap: OverlapPolicy | None = None

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True)
class ScheduleView:
    schedule: Schedule
    # The next fire times in UTC (empty while paused), and the latest decided slots.
    upcoming: list[datetime]
    recent_slots: list[ScheduleSlot]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.schedule.timezone)


class ScheduleBook:
    def __init__(self, settings: Settings, on_change: Callable[[UUID], None]) -> None:
        self.settings = settings
        # Tells the scheduler that this task's schedule changed (it plans it again).
        self.on_change = on_change

    async def set(self, task_id: UUID, change: ScheduleChange) -> tuple[Schedule, bool]:
        """Create the task's schedule or change it; answers it and whether it is new."""
        if change.cron_expression is None:
            raise BadRequest(
                "field 'cron_expression' is required, e.g. '*/15 * * * *' or '@daily'",
                code="missing_cron",
            )
        await schedulable_task(task_id)
        current = await Schedule.get_or_none(task_id=task_id)
        schedule = await self._save(task_id, current, change)
        return schedule, current is None

    async def change(self, task_id: UUID, change: ScheduleChange) -> Schedule:
        """Change some settings of an existing schedule (pause and resume with `enabled`)."""
        if change.is_empty:
            names = ", ".join(f.name for f in fields(ScheduleChange))
            raise BadRequest(f"nothing to change: send one of {names}")
        current = await self.get(task_id)
        return await self._save(task_id, current, change)

    async def remove(self, task_id: UUID) -> None:
        """Delete the task's schedule; its recorded slots stay as history."""
        schedule = await self.get(task_id)
        await schedule.delete()
        await cancel_waiting(task_id, "the schedule was removed")
        self.on_change(task_id)

    async def get(self, task_id: UUID) -> Schedule:
        schedule = await Schedule.get_or_none(task_id=task_id)
        if schedule is None:
            raise NotFound(f"task {task_id} has no schedule", code="schedule_not_found")
        return schedule

    async def _save(
        self, task_id: UUID, current: Schedule | None, change: ScheduleChange
    ) -> Schedule:
        expression = change.cron_expression or (current.cron_expression if current else "")
        spec = parse_cron(expression)
        zone = parse_timezone(
            change.timezone
            or (current.timezone if current else None)
            or self.settings.default_timezone
        )
        enabled = change.enabled
        if enabled is None:
            enabled = current.enabled if current else True
        overlap = change.overlap or (current.overlap if current else OverlapPolicy.SKIP)
        now = clock.utcnow()
        values: dict[str, Any] = {
            "cron_expression": spec.expression,
            "timezone": zone.key,
            "enabled": enabled,
            "overlap": overlap,
            "next_run_at": next_run_at(current, spec, zone, enabled, now),
            "updated_at": now,
        }
        if current is None:
            schedule = await Schedule.create(task_id=task_id, **values)
        else:
            schedule = current.update_from_dict(values)
            await schedule.save()
        await settle_waiting(schedule)
        self.on_change(task_id)
        return schedule

    async def find_view(self, task_id: UUID) -> ScheduleView | None:
        schedule = await Schedule.get_or_none(task_id=task_id)
        return None if schedule is None else await self.view(schedule)

    async def view(self, schedule: Schedule) -> ScheduleView:
        """The schedule with its next fire times and its latest decided slots."""
        upcoming: list[datetime] = []
        if schedule.enabled and schedule.next_run_at is not None:
            spec = parse_cron(schedule.cron_expression)
            first = schedule.next_run_at
            zone = ZoneInfo(schedule.timezone)
            upcoming = [first, *next_fire_times(spec, zone, first, SHOWN_FIRE_TIMES - 1)]
        slots = (
            await ScheduleSlot.filter(task_id=schedule.task_id)
            .order_by("-slot_at")
            .limit(SHOWN_SLOTS)
        )
        return ScheduleView(schedule, upcoming, list(slots))


def next_run_at(
    current: Schedule | None, spec: CronSpec, zone: ZoneInfo, enabled: bool, now: datetime
) -> datetime | None:
    """Keep a pending slot when the times do not change, so saving never drops a due slot."""
    if not enabled:
        return None
    unchanged = (
        current is not None
        and current.enabled
        and current.next_run_at is not None
        and current.cron_expression == spec.expression
        and current.timezone == zone.key
    )
    if unchanged and current is not None:
        return current.next_run_at
    return next_fire_time(spec, zone, now)


async def settle_waiting(schedule: Schedule) -> None:
    task_id = UUID(str(schedule.task_id))
    if not schedule.enabled:
        await cancel_waiting(task_id, "the schedule was paused")
    elif schedule.overlap is not OverlapPolicy.QUEUE:
        await cancel_waiting(task_id, "the overlap policy changed")


async def schedulable_task(task_id: UUID) -> Task:
    task = await Task.get_or_none(id=task_id).only("id", "script")
    if task is None:
        raise NotFound(f"no task with id {task_id}", code="task_not_found")
    if task.script is None:
        raise Conflict(
            "this task's script was not kept (it was created with upload=false), so it cannot "
            "be scheduled: upload it again with upload=true",
            code="script_not_kept",
        )
    return task
