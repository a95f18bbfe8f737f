"""Finding runs and what they left: the latest and active run, logs, the container's data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from taskdash.core.errors import NotFound, TaskdashError
from taskdash.core.models import ACTIVE_STATUSES, Run, Task
from taskdash.services import Services


async def get_run(task: Task, run_id: UUID) -> Run:
    run = await Run.get_or_none(id=run_id, task_id=task.id)
    if run is None:
        raise NotFound(f"task {task.id} has no run with id {run_id}", code="run_not_found")
    return run


async def find_run(run_id: UUID) -> Run | None:
    run: Run | None = await Run.get_or_none(id=run_id)
    return run


async def latest_run(task: Task) -> Run | None:
    if task.last_run_id is None:
        return None
    return await find_run(task.last_run_id)


async def chosen_run(task: Task, run_id: UUID | None) -> Run:
    """The run asked for, else the task's latest; 404 when the task has none yet."""
    if run_id is not None:
        return await get_run(task, run_id)
    run = await latest_run(task)
    if run is None:
        raise NotFound(f"task {task.id} has no run yet", code="no_run")
    return run


async def active_run(task: Task) -> Run | None:
    """The task's newest queued or running run, if any."""
    run: Run | None = (
        await Run.filter(task_id=task.id, status__in=ACTIVE_STATUSES).order_by("-queued_at").first()
    )
    return run


async def list_runs(task: Task, limit: int, offset: int) -> tuple[list[Run], int]:
    query = Run.filter(task_id=task.id)
    total = await query.count()
    runs = await query.order_by("-queued_at").offset(offset).limit(limit)
    return list(runs), total


async def latest_run_ids(task_ids: list[UUID]) -> dict[UUID, UUID | None]:
    rows = await Task.filter(id__in=task_ids).values_list("id", "last_run_id")
    return {UUID(str(task_id)): run_id for task_id, run_id in rows}


async def log_chunks(services: Services, run: Run) -> AsyncIterator[bytes]:
    """The run's whole stored log, read piece by piece off the event loop."""
    chunks = services.logs.read_chunks(run.id)
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk
    finally:
        chunks.close()


@dataclass(frozen=True)
class ContainerInfo:
    """`docker inspect` of a run's container: `live` (inspected now, while it runs), `kept`
    (saved when it ended), or `none` (no container yet, or the engine does not answer)."""

    source: Literal["live", "kept", "none"]
    data: dict[str, Any] | None


async def container_info(services: Services, run: Run | None) -> ContainerInfo:
    if run is None:
        return ContainerInfo("none", None)
    try:
        live = await services.runs.live_inspect(run)
    except TaskdashError:
        live = None
    if live is not None:
        return ContainerInfo("live", live)
    if run.docker_info:
        return ContainerInfo("kept", run.docker_info)
    return ContainerInfo("none", None)
