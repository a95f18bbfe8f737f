"""What an earlier process left behind: runs still `running`, queued runs, labelled containers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from taskdash.core.models import Run, RunStatus
from taskdash.engine.docker import DockerEngine
from taskdash.engine.spec import LABEL_PREFIX
from taskdash.engine.states import RunStates

log = logging.getLogger(__name__)

CONTAINER_LOST = (
    "the server stopped while this run was being prepared or its container disappeared; "
    "run the task again"
)


@dataclass
class Leftovers:
    # Runs whose container still exists: to re-attach, with the container's id.
    to_resume: list[tuple[Run, str]] = field(default_factory=list)
    # Runs recorded but never started: to start again, oldest first.
    to_start: list[Run] = field(default_factory=list)


async def reconcile(instance: str, engine: DockerEngine, states: RunStates) -> Leftovers:
    """Finish the runs that lost their container, remove containers no run owns, and say
    which runs to re-attach and which to start."""
    containers = await engine.list_labelled({f"{LABEL_PREFIX}instance": instance})
    by_run = {
        c.labels.get(f"{LABEL_PREFIX}run_id", ""): c
        for c in containers
        if c.labels.get(f"{LABEL_PREFIX}role") == "run"
    }
    leftovers = Leftovers()
    resumed: set[str] = set()
    for run in await Run.filter(status=RunStatus.RUNNING).prefetch_related("task"):
        container = by_run.get(str(run.id))
        if run.container_id is None or container is None:
            await states.finish(run.id, RunStatus.ERROR, error=CONTAINER_LOST)
            continue
        resumed.add(container.id)
        leftovers.to_resume.append((run, container.id))
    for container in containers:
        if container.id not in resumed:
            log.warning("removing orphan container %s", container.id[:12])
            await engine.remove(container.id)
    leftovers.to_start = list(await Run.filter(status=RunStatus.QUEUED).order_by("queued_at"))
    return leftovers
