"""A task's schedule, as both surfaces change and show it (the rules are in
scheduling/schedules.py)."""

from __future__ import annotations

from uuid import UUID

from taskdash.operations.tasks import get_task
from taskdash.scheduling.schedules import ScheduleChange, ScheduleView
from taskdash.services import Services


async def set_schedule(
    services: Services, task_id: UUID, change: ScheduleChange
) -> tuple[ScheduleView, bool]:
    """Create or change the task's schedule; answers it and whether it is new."""
    schedule, created = await services.schedules.set(task_id, change)
    return await services.schedules.view(schedule), created


async def change_schedule(
    services: Services, task_id: UUID, change: ScheduleChange
) -> ScheduleView:
    """Change some settings of the task's existing schedule."""
    await get_task(task_id)
    schedule = await services.schedules.change(task_id, change)
    return await services.schedules.view(schedule)


async def remove_schedule(services: Services, task_id: UUID) -> None:
    await get_task(task_id)
    await services.schedules.remove(task_id)


async def show_schedule(services: Services, task_id: UUID) -> ScheduleView:
    """The task's schedule (404 when the task or its schedule does not exist)."""
    await get_task(task_id)
    return await services.schedules.view(await services.schedules.get(task_id))


async def schedule_view(services: Services, task_id: UUID) -> ScheduleView | None:
    return await services.schedules.find_view(task_id)
