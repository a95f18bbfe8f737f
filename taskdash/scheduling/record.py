"""The database writes of a scheduler step: decided slots with their runs, schedules moved on.

Exactly once: a slot is recorded in `schedule_slot`, unique on (task, slot_at), in the same
transaction that creates its run. A second decision of the same slot (a retry after a crash,
`fire_due` called twice, another replica) fails that constraint and adds nothing; a crash
after the commit leaves a `queued` run that the RunManager starts at the next start.
"""

from __future__ import annotations

import contextlib
from uuid import UUID

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from taskdash.core import clock
from taskdash.core.bulk import BulkUpdate, Table
from taskdash.core.models import ACTIVE_STATUSES, Run, Schedule, ScheduleSlot, SlotOutcome
from taskdash.scheduling.decide import Decision
from taskdash.scheduling.plan import Batch


async def active_task_ids(task_ids: list[UUID] | None = None) -> set[UUID]:
    """Tasks with a queued or running run (among `task_ids`, or all)."""
    query = Run.filter(status__in=ACTIVE_STATUSES)
    if task_ids is not None:
        query = query.filter(task_id__in=task_ids)
    found = await query.values_list("task_id", flat=True)
    return {UUID(str(task_id)) for task_id in found}


async def waiting_task_ids() -> set[UUID]:
    found = await ScheduleSlot.filter(outcome=SlotOutcome.WAITING).values_list("task_id", flat=True)
    return {UUID(str(task_id)) for task_id in found}


async def record_batch(batch: Batch) -> None:
    """One transaction: the slots, the runs of the fired ones, and the tasks' latest run."""
    statements = batch.statements
    async with in_transaction() as connection:
        await statements.slots.execute(connection, batch.slots)
        await statements.runs.execute(connection, batch.runs)
        await statements.pointers.execute(connection, batch.pointers)


async def record_one_by_one(batch: Batch, recorded: list[Decision]) -> None:
    """Each slot in its own transaction; one decided elsewhere already is left out."""
    for single in batch.split():
        with contextlib.suppress(IntegrityError):
            await record_batch(single)
            stamp_recorded(single.decisions, recorded)


def stamp_decided(batches: list[Batch]) -> list[Batch]:
    decided = clock.utcnow()
    for batch in batches:
        for decision in batch.decisions:
            decision.decided_at = decided
    return batches


def stamp_recorded(decisions: list[Decision], recorded: list[Decision]) -> None:
    committed = clock.utcnow()
    for decision in decisions:
        decision.recorded_at = committed
    recorded += decisions


async def advance_schedules(decisions: list[Decision]) -> None:
    """Move each schedule past its decided slot, unless it was changed meanwhile."""
    table = Table(Schedule, connections.get("default"))
    where = ["id", "next_run_at"]
    fired = BulkUpdate(table, ["next_run_at", "last_run_at"], where)
    other = BulkUpdate(table, ["next_run_at"], where)
    fired_rows, other_rows = [], []
    for d in decisions:
        if d.outcome is SlotOutcome.FIRED:
            fired_rows.append(fired.row([d.next_run_at, d.slot_at, d.schedule_id, d.due_at]))
        else:
            other_rows.append(other.row([d.next_run_at, d.schedule_id, d.due_at]))
    async with in_transaction() as connection:
        await fired.execute(connection, fired_rows)
        await other.execute(connection, other_rows)
