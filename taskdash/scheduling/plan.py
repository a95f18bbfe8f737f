"""The slots due at one instant: decided, and turned into database rows, before they are due.

At 10,000 schedules due in the same second, reading them, doing the cron maths and converting
20,000 rows for the database takes about a second of Python, while the inserts themselves take
about 0.15 s. The scheduler builds the plan of the next due instant while it sleeps
(`plan_due`), so at the due second only the busy check and the inserts are left
(`DuePlan.settle`). A plan assumes no task is busy; `settle` decides again for the tasks
that are. A plan holds only while no schedule changes: `Scheduler.wake()` drops it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from tortoise import connections

from taskdash.core.bulk import BulkInsert, BulkUpdate, Table, placeholder
from taskdash.core.config import Settings
from taskdash.core.models import (
    ActorKind,
    Run,
    RunStatus,
    Schedule,
    ScheduleSlot,
    Task,
    Trigger,
)
from taskdash.scheduling.cron import DueSlots
from taskdash.scheduling.decide import CronMemo, Decision, DueSchedule, decide

# A plan made for instant T is used up to this long after T (when planning took longer than the
# time left). Under MIN_SLOT_GAP and LATE_AFTER, so deciding at T or then gives the same answer.
PLAN_TOLERANCE = timedelta(seconds=30)
# Slots per transaction at the due second, and per query while planning.
BATCH_SIZE = 2500
PLAN_CHUNK = 1000
# Planning lets requests in at least this often (10,000 distinct expressions take seconds).
PLAN_BREATH_SECONDS = 0.02


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# reading what is due --------------------------------------------------------------------------


@dataclass(frozen=True)
class DueRow:
    """A due schedule with what its run needs from the task."""

    schedule: DueSchedule
    image: str


class DueReader:
    """Enabled schedules due at or before an instant, joined with their task, in one query.

    The rows are converted here rather than by the ORM: most values repeat (the due instant,
    the expression, the zone), so each distinct one is converted once.
    """

    def __init__(self, settings: Settings, memo: CronMemo) -> None:
        self.settings = settings
        self.memo = memo
        self.connection = connections.get("default")
        self.schedules = Table(Schedule, self.connection)
        self.tasks = Table(Task, self.connection)
        self.images: dict[tuple[Any, Any], str] = {}

    def sql(self, task_count: int | None) -> str:
        """Parameters: enabled, the instant, then `task_count` task ids (None: all tasks)."""
        s, t = self.schedules, self.tasks
        mark = partial(placeholder, s.dialect)
        columns = ", ".join(
            s.column(name, "s")
            for name in ("id", "task_id", "cron_expression", "timezone", "overlap", "next_run_at")
        )
        sql = (
            f"SELECT {columns}, {t.column('image', 't')}, {t.column('script_type', 't')} "
            f"FROM {s.name} s JOIN {t.name} t "
            f"ON {t.column('id', 't')} = {s.column('task_id', 's')} "
            f"WHERE {s.column('enabled', 's')} = {mark(0)} "
            f"AND {s.column('next_run_at', 's')} <= {mark(1)}"
        )
        if task_count is not None:
            ids = ", ".join(mark(2 + index) for index in range(task_count))
            sql += f" AND {s.column('task_id', 's')} IN ({ids})"
        return sql + f" ORDER BY {s.column('next_run_at', 's')}"

    def image(self, image: str | None, script_type: str) -> str:
        key = (image, script_type)
        if key not in self.images:
            self.images[key] = self.settings.image_for(script_type, image)
        return self.images[key]

    async def read(self, until: datetime, task_ids: Sequence[UUID] | None = None) -> list[DueRow]:
        """Due at or before `until` (of `task_ids` only, when given)."""
        params: list[Any] = [
            self.schedules.to_db("enabled", True),
            self.schedules.to_db("next_run_at", until),
        ]
        if task_ids is not None:
            params += [self.tasks.to_db("id", task_id) for task_id in task_ids]
        sql = self.sql(None if task_ids is None else len(task_ids))
        _, rows = await self.connection.execute_query(sql, params)
        return [self.row(row) for row in rows]

    def row(self, row: Mapping[str, Any]) -> DueRow:
        task_id = row["task_id"]
        return DueRow(
            DueSchedule(
                schedule_id=row["id"],
                task_id=task_id if isinstance(task_id, UUID) else UUID(task_id),
                spec=self.memo.spec(row["cron_expression"]),
                zone=self.memo.zone(row["timezone"]),
                overlap=self.schedules.to_python("overlap", row["overlap"]),
                next_run_at=self.schedules.to_python("next_run_at", row["next_run_at"]),
            ),
            self.image(row["image"], row["script_type"]),
        )


async def decided_slots(decisions: Sequence[Decision]) -> set[tuple[UUID, datetime]]:
    """Which of these slots are recorded already (by an earlier step, or before a crash)."""
    task_ids = [d.task_id for d in decisions]
    slot_times = list({d.slot_at for d in decisions})
    rows = await ScheduleSlot.filter(task_id__in=task_ids, slot_at__in=slot_times).values_list(
        "task_id", "slot_at"
    )
    return {(UUID(str(task_id)), slot_at) for task_id, slot_at in rows}


# the plan -------------------------------------------------------------------------------------


class Breather:
    """Lets other coroutines run now and then during a long computation on the event loop."""

    def __init__(self) -> None:
        self.since = time.monotonic()

    async def __call__(self) -> None:
        if time.monotonic() - self.since >= PLAN_BREATH_SECONDS:
            await asyncio.sleep(0)
            self.since = time.monotonic()


SLOT_COLUMNS = (
    "task_id", "slot_at", "outcome", "run_id", "catch_up", "missed_before", "reason",
    "recorded_at",
)  # fmt: skip
RUN_COLUMNS = (
    "id", "task_id", "status", "trigger", "image", "queued_at", "scheduled_for", "catch_up",
    "log_bytes", "log_lines", "log_truncated", "started_by_kind", "started_by_name", "owner",
    "stop_requested",
)  # fmt: skip


class Statements:
    """The plan's writes, with their rows converted for the database ahead of time."""

    def __init__(self, replica: str) -> None:
        # The scheduling replica runs what it fires: its runs are claimed as they are written.
        self.replica = replica
        connection = connections.get("default")
        self.slots = BulkInsert(Table(ScheduleSlot, connection), SLOT_COLUMNS)
        self.runs = BulkInsert(Table(Run, connection), RUN_COLUMNS)
        self.pointers = BulkUpdate(Table(Task, connection), ["last_run_id", "updated_at"], ["id"])
        self.slot_recorded_at = self.slots.position("recorded_at")
        self.run_queued_at = self.runs.position("queued_at")
        self.pointer_updated_at = self.pointers.position("updated_at")

    def slot(self, decision: Decision) -> list[Any]:
        return self.slots.row(
            {
                "task_id": decision.task_id,
                "slot_at": decision.slot_at,
                "outcome": decision.outcome,
                "run_id": decision.run_id,
                "catch_up": decision.catch_up,
                "missed_before": decision.missed_before,
                "reason": decision.reason,
            }
        )

    def pointer(self, decision: Decision) -> list[Any] | None:
        """The task's latest-run pointer; `updated_at` is filled in at the due second."""
        if decision.run_id is None:
            return None
        pointers, table = self.pointers, self.pointers.table
        row: list[Any] = [None] * len(pointers.names)
        row[pointers.position("last_run_id")] = table.to_db("last_run_id", decision.run_id)
        row[pointers.position("id")] = table.to_db("id", decision.task_id)
        return row

    def run(self, decision: Decision, image: str) -> list[Any] | None:
        if decision.run_id is None:
            return None
        return self.runs.row(
            {
                "id": decision.run_id,
                "task_id": decision.task_id,
                "status": RunStatus.QUEUED,
                "trigger": Trigger.SCHEDULE,
                "image": image,
                "scheduled_for": decision.slot_at,
                "catch_up": decision.catch_up,
                "started_by_kind": ActorKind.SCHEDULE,
                "owner": self.replica,
            }
        )


@dataclass(slots=True)
class PlannedSlot:
    due: DueSchedule
    slots: DueSlots
    image: str
    decision: Decision
    slot_params: list[Any]
    run_params: list[Any] | None
    pointer_params: list[Any] | None


@dataclass
class Batch:
    """One transaction's rows, with `now` filled in: a slot per decision, a run and a task
    pointer per fired one."""

    statements: Statements
    decisions: list[Decision] = field(default_factory=list)
    slots: list[list[Any]] = field(default_factory=list)
    runs: list[list[Any]] = field(default_factory=list)
    pointers: list[list[Any]] = field(default_factory=list)

    def split(self) -> Iterable[Batch]:
        """One batch per decision."""
        fired = 0
        for decision, slot in zip(self.decisions, self.slots, strict=True):
            single = Batch(self.statements, [decision], [slot])
            if decision.run_id is not None:
                single.runs, single.pointers = [self.runs[fired]], [self.pointers[fired]]
                fired += 1
            yield single


@dataclass
class DuePlan:
    at: datetime
    generation: int
    watching_since: datetime
    deadline: timedelta
    reader: DueReader
    statements: Statements
    # Slots to record, decided as if no task were busy; `settle` decides again for busy ones.
    planned: list[PlannedSlot]
    # Slots recorded already (a step before a crash): only their schedules move on.
    recorded_before: list[Decision]
    settled: bool = False

    def holds(self, now: datetime, generation: int) -> bool:
        """Usable at `now`: made for it, under the current generation, and not used yet."""
        in_time = self.at <= now <= self.at + PLAN_TOLERANCE
        return not self.settled and generation == self.generation and in_time

    def settle(self, busy: set[UUID], waiting: set[UUID], now: datetime) -> list[Batch]:
        """The final rows in transaction-sized batches, stamped with `now`.

        The planned rows are stamped in place, not copied: at 10,000 slots, 30,000 new lists
        at the due second are enough allocations to set off a full garbage collection (about
        0.1 s in a server process) in the middle of the write. So a plan is settled once.
        """
        if self.settled:
            raise RuntimeError("a plan is settled once")
        self.settled = True
        statements = self.statements
        recorded_at = statements.slots.table.to_db("recorded_at", now)
        queued_at = statements.runs.table.to_db("queued_at", now)
        pointer_at = statements.pointers.table.to_db("updated_at", now)
        batches = []
        for group in chunks(self.planned, BATCH_SIZE):
            batch = Batch(statements)
            for planned in group:
                if planned.due.task_id in busy or planned.due.task_id in waiting:
                    self.redecide(planned, busy, waiting)
                batch.decisions.append(planned.decision)
                planned.slot_params[statements.slot_recorded_at] = recorded_at
                batch.slots.append(planned.slot_params)
                if planned.run_params is not None and planned.pointer_params is not None:
                    planned.run_params[statements.run_queued_at] = queued_at
                    batch.runs.append(planned.run_params)
                    planned.pointer_params[statements.pointer_updated_at] = pointer_at
                    batch.pointers.append(planned.pointer_params)
            batches.append(batch)
        return batches

    def redecide(self, planned: PlannedSlot, busy: set[UUID], waiting: set[UUID]) -> None:
        task_id = planned.due.task_id
        planned.decision = decide(
            planned.due,
            planned.slots,
            self.at,
            watching_since=self.watching_since,
            deadline=self.deadline,
            busy=task_id in busy,
            waiting=task_id in waiting,
        )
        planned.slot_params = self.statements.slot(planned.decision)
        planned.run_params = self.statements.run(planned.decision, planned.image)
        planned.pointer_params = self.statements.pointer(planned.decision)

    async def add(self, rows: list[DueRow]) -> None:
        """Decide these due schedules (as if idle) and convert their rows."""
        horizon = self.deadline + timedelta(days=1)
        breathe = Breather()
        for group in chunks(rows, PLAN_CHUNK):
            planned = []
            for row in group:
                await breathe()
                slots = self.reader.memo.due(row.schedule, self.at, horizon)
                decision = decide(
                    row.schedule,
                    slots,
                    self.at,
                    watching_since=self.watching_since,
                    deadline=self.deadline,
                    busy=False,
                    waiting=False,
                )
                planned.append(
                    PlannedSlot(row.schedule, slots, row.image, decision, [], None, None)
                )
            taken = await decided_slots([p.decision for p in planned])
            for item in planned:
                if (item.decision.task_id, item.decision.slot_at) in taken:
                    self.recorded_before.append(item.decision)
                    continue
                item.slot_params = self.statements.slot(item.decision)
                item.run_params = self.statements.run(item.decision, item.image)
                item.pointer_params = self.statements.pointer(item.decision)
                self.planned.append(item)

    async def refresh(self, task_ids: set[UUID]) -> None:
        """Plan again the tasks whose schedule changed (or went) after the plan was read."""
        if not task_ids:
            return
        self.planned = [p for p in self.planned if p.due.task_id not in task_ids]
        self.recorded_before = [d for d in self.recorded_before if d.task_id not in task_ids]
        for group in chunks(sorted(task_ids), PLAN_CHUNK):
            await self.add(await self.reader.read(self.at, group))

    @property
    def decisions(self) -> list[Decision]:
        return [p.decision for p in self.planned] + self.recorded_before


async def plan_due(
    at: datetime,
    *,
    generation: int,
    watching_since: datetime,
    deadline: timedelta,
    settings: Settings,
) -> DuePlan:
    """Read and decide every slot due at `at`, and convert their rows, without writing."""
    reader = DueReader(settings, CronMemo())
    plan = DuePlan(
        at, generation, watching_since, deadline, reader, Statements(settings.replica), [], []
    )
    await plan.add(await reader.read(at))
    return plan
