"""Tasks: create (and run), run again, stop, delete, find and list."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from tortoise.transactions import in_transaction

from taskdash.core.errors import Conflict, NotFound
from taskdash.core.models import Run, Schedule, ScriptType, Task, Trigger
from taskdash.operations.runs import active_run
from taskdash.services import Services


@dataclass(frozen=True)
class NewTask:
    script_type: ScriptType
    script: bytes
    filename: str
    name: str
    upload: bool = True
    requirements: str | None = None
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    memory_mb: int | None = None
    cpus: float | None = None


@dataclass(frozen=True)
class TaskRow:
    task: Task
    last_run: Run | None
    schedule: Schedule | None


async def create_task(services: Services, new: NewTask, trigger: Trigger) -> tuple[Task, Run]:
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
    run = await services.runs.queue(task, trigger, script=None if new.upload else new.script)
    return task, run


async def run_task(services: Services, task: Task, trigger: Trigger) -> Run:
    """Start a new run of a stored task (409 when its script was not kept)."""
    return await services.runs.queue(task, trigger)


async def stop_task(services: Services, task: Task) -> Run:
    """Stop the task's queued or running run; answers it once it has ended."""
    run = await active_run(task)
    if run is None:
        raise Conflict(f"“{task.name}” has no queued or running run to stop", code="not_running")
    return await services.runs.stop(run)


async def delete_task(services: Services, task: Task) -> None:
    """Stop its live runs, then remove the task, its runs, schedule and logs."""
    await services.runs.kill_task_runs(task.id)
    run_ids = await Run.filter(task_id=task.id).values_list("id", flat=True)
    async with in_transaction():
        await Run.filter(task_id=task.id).delete()
        await Schedule.filter(task_id=task.id).delete()
        await task.delete()
    services.scheduler.wake(task.id)
    for run_id in run_ids:
        services.logs.delete(UUID(str(run_id)))


async def get_task(task_id: UUID) -> Task:
    task = await Task.get_or_none(id=task_id)
    if task is None:
        raise NotFound(f"no task with id {task_id}", code="task_not_found")
    return task


async def find_task(task_id: UUID) -> Task | None:
    task: Task | None = await Task.get_or_none(id=task_id)
    return task


async def task_exists(task_id: UUID) -> bool:
    return bool(await Task.exists(id=task_id))


async def list_tasks(limit: int, offset: int) -> tuple[list[TaskRow], int]:
    """A page of tasks, newest first, each with its latest run and schedule."""
    total = await Task.all().count()
    tasks = await Task.all().order_by("-created_at").offset(offset).limit(limit)
    return await rows_for(list(tasks)), total


async def task_row(task: Task) -> TaskRow:
    return (await rows_for([task]))[0]


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
