"""Task operations shared by the JSON API and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from tortoise.transactions import in_transaction

from taskdash.core.errors import NotFound
from taskdash.core.models import ACTIVE_STATUSES, Run, Schedule, Task, Trigger, utcnow
from taskdash.engine.runs import RunManager
from taskdash.logs.hub import LogHub
from taskdash.scheduling.scheduler import Scheduler
from taskdash.web.forms import NewTask


@dataclass(frozen=True)
class TaskRow:
    task: Task
    last_run: Run | None
    schedule: Schedule | None


async def create_task(new: NewTask, manager: RunManager, trigger: Trigger) -> tuple[Task, Run]:
    """Store the task (its script only when `upload`) and start its first run."""
    task = await Task.create(
        name=new.name,
        script_type=new.script_type,
        script=new.script if new.upload else None,
        script_filename=new.filename,
        requirements=new.requirements,
        image=new.image,
        env=new.env,
        timeout_seconds=new.timeout_seconds,
        memory_mb=new.memory_mb,
        cpus=new.cpus,
    )
    run = await manager.submit(task, trigger, script=None if new.upload else new.script)
    return task, run


async def get_task(task_id: UUID) -> Task:
    task = await Task.get_or_none(id=task_id)
    if task is None:
        raise NotFound(f"no task with id {task_id}", code="task_not_found")
    return task


async def get_run(task: Task, run_id: UUID) -> Run:
    run = await Run.get_or_none(id=run_id, task_id=task.id)
    if run is None:
        raise NotFound(f"task {task.id} has no run with id {run_id}", code="run_not_found")
    return run


async def latest_run(task: Task) -> Run | None:
    if task.last_run_id is None:
        return None
    return await Run.get_or_none(id=task.last_run_id)


async def active_run(task: Task) -> Run | None:
    """The task's newest queued or running run, if any."""
    run: Run | None = (
        await Run.filter(task_id=task.id, status__in=ACTIVE_STATUSES).order_by("-queued_at").first()
    )
    return run


async def list_tasks(limit: int, offset: int) -> tuple[list[TaskRow], int]:
    """A page of tasks, newest first, each with its latest run and schedule."""
    total = await Task.all().count()
    tasks = await Task.all().order_by("-created_at").offset(offset).limit(limit)
    return await rows_for(tasks), total


async def rows_for(tasks: list[Task]) -> list[TaskRow]:
    run_ids = [t.last_run_id for t in tasks if t.last_run_id is not None]
    runs = {r.id: r for r in await Run.filter(id__in=run_ids)} if run_ids else {}
    task_ids = [t.id for t in tasks]
    schedules = (
        {s.task_id: s for s in await Schedule.filter(task_id__in=task_ids)} if task_ids else {}
    )
    return [
        TaskRow(
            task=t,
            last_run=runs.get(t.last_run_id) if t.last_run_id else None,
            schedule=schedules.get(t.id),
        )
        for t in tasks
    ]


async def list_runs(task: Task, limit: int, offset: int) -> tuple[list[Run], int]:
    query = Run.filter(task_id=task.id)
    total = await query.count()
    runs = await query.order_by("-queued_at").offset(offset).limit(limit)
    return list(runs), total


async def delete_task(
    task: Task, manager: RunManager, hub: LogHub, scheduler: Scheduler | None
) -> None:
    """Stop its live runs, then remove the task, its runs, schedule and logs."""
    await manager.kill_task_runs(task.id)
    run_ids = await Run.filter(task_id=task.id).values_list("id", flat=True)
    async with in_transaction():
        await Run.filter(task_id=task.id).delete()
        await Schedule.filter(task_id=task.id).delete()
        await task.delete()
    if scheduler is not None:
        scheduler.wake(task.id)
    for run_id in run_ids:
        hub.delete(UUID(str(run_id)))


async def touch(task: Task) -> None:
    task.updated_at = utcnow()
    await task.save(update_fields=["updated_at"])
