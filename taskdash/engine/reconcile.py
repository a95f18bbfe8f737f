"""What nobody in this process supervises: runs still `running` or `queued`, labelled containers.

It runs at start-up (what an earlier process left), every time the Docker engine answers
again after an outage, and after this replica took over the runs of one that died. It handles
only this replica's runs (and queued runs nobody claimed); runs this process supervises
(`owned`) are theirs to handle and left alone, with their containers, and so are the runs
other replicas own.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from dataclasses import dataclass, field
from uuid import UUID

from taskdash.core.errors import TaskdashError
from taskdash.core.models import ACTIVE_STATUSES, Run, RunStatus
from taskdash.engine.docker import ContainerSummary, DockerEngine, EngineUnavailable
from taskdash.engine.replicas import claimable_by
from taskdash.engine.spec import LABEL_PREFIX
from taskdash.engine.states import RunStates
from taskdash.engine.supervisor import LOG_OFFSET_LABEL
from taskdash.logs.store import LogStore

log = logging.getLogger(__name__)

CONTAINER_LOST = (
    "its container disappeared while the server was stopped (it was removed, or the engine "
    "lost it); run the task again"
)
REQUEUED_NOTE = (
    "[taskdash] this run was cut short before its script started (the server or the Docker "
    "engine stopped): it starts again from the beginning"
)


@dataclass(frozen=True)
class Resumable:
    run: Run
    container_id: str
    # Lines the log held before the container's own output.
    log_offset: int


@dataclass
class Leftovers:
    # Runs whose container was started: to re-attach.
    to_resume: list[Resumable] = field(default_factory=list)
    # Runs recorded but never started (or whose start was cut short): to start, oldest first.
    to_start: list[Run] = field(default_factory=list)


def run_id_of(container: ContainerSummary) -> UUID | None:
    try:
        return UUID(container.labels.get(f"{LABEL_PREFIX}run_id", ""))
    except ValueError:
        return None


async def reconcile(
    instance: str,
    replica: str,
    engine: DockerEngine,
    states: RunStates,
    logs: LogStore,
    owned: Container[UUID],
) -> Leftovers:
    """Finish the runs that lost their container, queue again those whose script never
    started, remove containers no run owns, and say which runs to re-attach and to start."""
    containers = await engine.list_labelled({f"{LABEL_PREFIX}instance": instance})
    by_run = {run_id_of(c): c for c in containers if c.labels.get(f"{LABEL_PREFIX}role") == "run"}
    leftovers = Leftovers()
    kept: set[str] = set()
    others = set(
        await Run.filter(status__in=ACTIVE_STATUSES, owner__not_isnull=True)
        .exclude(owner=replica)
        .values_list("id", flat=True)
    )
    mine = Run.filter(status=RunStatus.RUNNING, owner=replica).prefetch_related("task")
    for run in await mine:
        if run.id in owned:
            continue
        container = by_run.get(run.id)
        if container is not None and container.state != "created":
            kept.add(container.id)
            offset = int(container.labels.get(LOG_OFFSET_LABEL) or 0)
            leftovers.to_resume.append(Resumable(run, container.id, offset))
        elif container is not None or (run.container_id is None and run.started_at is None):
            # Killed while it was being prepared: nothing of its script ran yet. Its container,
            # if created, is removed below with the orphans.
            await requeue(run, states, logs)
        else:
            await states.finish(run.id, RunStatus.ERROR, error=CONTAINER_LOST)
    for container in containers:
        run_id = run_id_of(container)
        if container.id in kept or (run_id is not None and (run_id in owned or run_id in others)):
            continue
        log.warning("removing orphan container %s", container.id[:12])
        await remove_orphan(engine, container)
    queued = (
        await Run.filter(status=RunStatus.QUEUED)
        .filter(claimable_by(replica))
        .order_by("queued_at")
    )
    leftovers.to_start = [run for run in queued if run.id not in owned]
    return leftovers


async def requeue(run: Run, states: RunStates, logs: LogStore) -> None:
    if not await states.requeue(run):
        return
    writer = await logs.open_writer_off_loop(run.id)
    try:
        writer.write([REQUEUED_NOTE])
    finally:
        writer.close()


async def remove_orphan(engine: DockerEngine, container: ContainerSummary) -> None:
    try:
        await engine.remove(container.id)
    except EngineUnavailable:
        raise
    except TaskdashError as exc:  # one refusal must not keep the rest from being reconciled
        log.warning("cannot remove orphan container %s: %s", container.id[:12], exc.message)
