"""Tasks: create (and run), run again, stop, delete, find and list."""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from uuid import UUID

from tortoise.transactions import in_transaction

from taskdash.core.config import Settings
from taskdash.core.crypto import SecretsUnreadable
from taskdash.core.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
)
from taskdash.core.models import ActorKind, Run, RunStatus, Schedule, ScriptType, Task, Trigger
from taskdash.core.principal import Principal
from taskdash.operations.runs import active_run
from taskdash.services import Services

log = logging.getLogger(__name__)

MIN_SECRET_CHARS = 4


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
    # Env values never shown again: stored encrypted, masked in logs.
    secret_env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    memory_mb: int | None = None
    cpus: float | None = None


@dataclass(frozen=True)
class TaskRow:
    task: Task
    last_run: Run | None
    schedule: Schedule | None


def check_task_limits(new: NewTask, settings: Settings) -> None:
    """What a task asks for stays within the installation's maxima and allowed images."""
    for name, asked, maximum, variable in (
        (
            "timeout_seconds",
            new.timeout_seconds,
            settings.max_run_timeout_seconds,
            "TIMEOUT_SECONDS",
        ),
        ("memory_mb", new.memory_mb, settings.max_run_memory_mb, "MEMORY_MB"),
        ("cpus", new.cpus, settings.max_run_cpus, "CPUS"),
    ):
        if asked is not None and asked > maximum:
            raise BadRequest(
                f"'{name}' may be at most {maximum:g} here (TASKDASH_MAX_RUN_{variable}), "
                f"not {asked:g}",
                code="over_limit",
            )
    check_image(new.image, settings)


def check_image(image: str | None, settings: Settings) -> None:
    patterns = settings.allowed_image_patterns
    defaults = (settings.python_image, settings.shell_image)
    if image is None or not patterns or image in defaults:
        return
    if not any(fnmatch.fnmatchcase(image, pattern) for pattern in patterns):
        raise BadRequest(
            f"the image {image!r} is not allowed here: TASKDASH_ALLOWED_IMAGES permits "
            f"{', '.join(patterns)} (and the default images)",
            code="image_not_allowed",
        )


def check_secret_env(new: NewTask) -> None:
    overlap = sorted(set(new.env) & set(new.secret_env))
    if overlap:
        raise BadRequest(f"{', '.join(overlap)} is both in 'env' and in 'secret_env'")
    for name, value in new.secret_env.items():
        if len(value) < MIN_SECRET_CHARS:
            raise BadRequest(
                f"secret {name!r} must have at least {MIN_SECRET_CHARS} characters "
                "(a shorter value cannot be masked in logs)"
            )


async def admit_run(services: Services, by: Principal) -> None:
    """Refuse a new run when `by` started too many lately, or when the queue is full."""
    settings = services.settings
    if settings.run_rate_per_minute and by.kind is not ActorKind.SCHEDULE:
        wait = services.run_starts.take(by.key)
        if wait is not None:
            raise TooManyRequests(
                f"{by.label} may start {settings.run_rate_per_minute} runs a minute "
                "(TASKDASH_RUN_RATE_PER_MINUTE): try again shortly",
                retry_after=wait,
                code="run_rate_limited",
            )
    if await Run.filter(status=RunStatus.QUEUED).count() >= settings.max_queued_runs:
        raise ServiceUnavailable(
            f"{settings.max_queued_runs} runs are waiting already (TASKDASH_MAX_QUEUED_RUNS): "
            "try again when the queue is shorter",
            code="queue_full",
            headers={"Retry-After": "10"},
        )


async def create_task(
    services: Services, new: NewTask, trigger: Trigger, by: Principal
) -> tuple[Task, Run]:
    """Store the task (its script only when `upload`) and start its first run."""
    check_task_limits(new, services.settings)
    check_secret_env(new)
    await admit_run(services, by)
    task = await Task.create(
        name=new.name,
        script_type=new.script_type,
        script=new.script if new.upload else None,
        script_filename=new.filename,
        requirements=new.requirements,
        image=new.image,
        env=new.env,
        secret_env=services.keys.seal(new.secret_env) if new.secret_env else None,
        timeout_seconds=new.timeout_seconds,
        memory_mb=new.memory_mb,
        cpus=new.cpus,
    )
    script = None if new.upload else new.script
    run = await services.runs.queue(task, trigger, by, script=script)
    return task, run


async def run_task(services: Services, task: Task, trigger: Trigger, by: Principal) -> Run:
    """Start a new run of a stored task (409 when its script was not kept)."""
    await admit_run(services, by)
    return await services.runs.queue(task, trigger, by)


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


def secret_names(services: Services, task: Task) -> list[str]:
    """The names of the task's secret env variables (their values are never shown)."""
    if not task.secret_env:
        return []
    try:
        return sorted(services.keys.unseal(task.secret_env))
    except SecretsUnreadable as exc:
        log.warning("task %s: %s", task.id, exc)
        return []
