"""A run's state transitions in the database, each announced on the hub when it happens.

queued -> running -> a terminal state, and running -> queued for a run whose script never
started (requeue). Each is guarded by the current status, so concurrent writers (a stop racing
the container's end, a deletion) cannot move a run backwards: terminal states never change
again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from taskdash.core import clock
from taskdash.core.models import ACTIVE_STATUSES, Run, RunStatus
from taskdash.engine.replicas import claimable_by
from taskdash.logs.hub import LogHub
from taskdash.logs.store import LogWriter


def task_id_of(run: Run) -> UUID:
    task_id = run.task_id
    return task_id if isinstance(task_id, UUID) else UUID(str(task_id))


class RunStates:
    def __init__(self, hub: LogHub, replica: str) -> None:
        self.hub = hub
        # The replica whose runs these are: a run is claimed by the first replica to move it.
        self.replica = replica

    async def claim(self, run_id: UUID) -> bool:
        """Make a queued run this replica's, unless another replica claimed it already: one
        guarded UPDATE, so a run is claimed, and started, exactly once across replicas."""
        updated = (
            await Run.filter(id=run_id, status=RunStatus.QUEUED)
            .filter(claimable_by(self.replica))
            .update(owner=self.replica)
        )
        return bool(updated)

    def announce_queued(self, run_id: UUID, task_id: UUID) -> None:
        self.hub.publish_status(run_id, task_id, RunStatus.QUEUED)

    async def mark_running(self, run: Run) -> bool:
        """Queued -> running: the run is being prepared (its build, then its container).
        False when it was stopped meanwhile (then it must not go on)."""
        updated = (
            await Run.filter(id=run.id, status__in=ACTIVE_STATUSES)
            .filter(claimable_by(self.replica))
            .update(status=RunStatus.RUNNING, owner=self.replica)
        )
        if updated and run.status is not RunStatus.RUNNING:
            run.status = RunStatus.RUNNING
            self.hub.publish_status(run.id, task_id_of(run), RunStatus.RUNNING)
        return bool(updated)

    # mark_build and mark_started record facts, whatever the status: a run stopped meanwhile
    # still ran its build, still started.

    async def mark_build(self, run: Run, *, started: bool) -> None:
        """The requirements build begins (started) or ends: its own phase, before the run's
        clock starts."""
        now = clock.utcnow()
        if started:
            run.build_started_at, run.build_finished_at = now, None
            fields: dict[str, Any] = {"build_started_at": now, "build_finished_at": None}
        else:
            run.build_finished_at = now
            fields = {"build_finished_at": now}
        await Run.filter(id=run.id).update(**fields)

    async def mark_started(
        self, run: Run, container_id: str, started_at: datetime | None = None
    ) -> None:
        """The run's container started: the API shows it from now, and the run's clock
        (started_at, the timeout) starts now."""
        run.container_id, run.started_at = container_id, started_at or clock.utcnow()
        await Run.filter(id=run.id).update(container_id=container_id, started_at=run.started_at)

    async def requeue(self, run: Run) -> bool:
        """Running -> queued, for a run whose script never started (its preparation was cut
        short by a crash or by losing the engine): it is prepared again from the start. False
        when it is not running any more."""
        updated = await Run.filter(id=run.id, status=RunStatus.RUNNING).update(
            status=RunStatus.QUEUED,
            container_id=None,
            build_started_at=None,
            build_finished_at=None,
            started_at=None,
        )
        if updated:
            run.status, run.container_id, run.started_at = RunStatus.QUEUED, None, None
            run.build_started_at = run.build_finished_at = None
            self.hub.publish_status(run.id, task_id_of(run), RunStatus.QUEUED)
        return bool(updated)

    async def finish(
        self,
        run_id: UUID,
        status: RunStatus,
        *,
        exit_code: int | None = None,
        error: str | None = None,
        docker_info: dict[str, Any] | None = None,
        writer: LogWriter | None = None,
        finished_at: datetime | None = None,
    ) -> bool:
        """Move an active run to a terminal state; False when it was terminal already."""
        fields: dict[str, Any] = {"status": status, "finished_at": finished_at or clock.utcnow()}
        if exit_code is not None:
            fields["exit_code"] = exit_code
        if error is not None:
            fields["error"] = error
        if docker_info is not None:
            fields["docker_info"] = docker_info
        if writer is not None:
            fields |= {
                "log_bytes": writer.bytes,
                "log_lines": writer.lines,
                "log_truncated": writer.truncated,
            }
        updated = await Run.filter(id=run_id, status__in=ACTIVE_STATUSES).update(**fields)
        if updated:
            run = await Run.get(id=run_id)
            self.hub.publish_status(run_id, task_id_of(run), status)
        elif docker_info is not None or writer is not None:
            # Already terminal (stopped while finishing): still keep what we learnt.
            keep = {k: v for k, v in fields.items() if k not in ("status", "finished_at", "error")}
            await Run.filter(id=run_id).update(**keep)
        return bool(updated)
