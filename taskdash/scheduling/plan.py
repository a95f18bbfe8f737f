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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from taskdash.core.bulk import BulkInsert, BulkUpdate
from taskdash.core.models import (
    OverlapPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleSlot,
    ScriptType,
    SlotOutcome,
    Task,
    Trigger,
)
from taskdash.scheduling.cron import CronSpec, DueSlots, due_slots, next_fire_time, parse_cron

# A slot decided later than this after it was due counts as a catch-up (the loop was stalled).
LATE_AFTER = timedelta(seconds=60)
# Cron fires on whole minutes, so a slot younger than this is the only one due.
MIN_SLOT_GAP = timedelta(seconds=60)
# A plan made for instant T is used up to this long after T (when planning took longer than the
# time left). Under MIN_SLOT_GAP and LATE_AFTER, so deciding at T or then gives the same answer.
PLAN_TOLERANCE = timedelta(seconds=30)
# Slots per transaction at the due second, and per query while planning.
BATCH_SIZE = 2500
PLAN_CHUNK = 1000
# Planning lets requests in at least this often (10,000 distinct expressions take seconds).
PLAN_BREATH_SECONDS = 0.02

ImageOf = Callable[[str | None, ScriptType], str]


# decisions (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DueSchedule:
    schedule_id: int
    task_id: UUID
    spec: CronSpec
    zone: ZoneInfo
    overlap: OverlapPolicy
    next_run_at: datetime


@dataclass(slots=True)
class Decision:
    task_id: UUID
    schedule_id: int
    slot_at: datetime
    outcome: SlotOutcome
    catch_up: bool
    missed_before: int
    reason: str
    next_run_at: datetime
    due_at: datetime
    run_id: UUID | None = None
    # When its outcome was final (the busy check done), and when it was committed.
    decided_at: datetime | None = None
    recorded_at: datetime | None = None


def is_catch_up(slots: DueSlots, now: datetime, watching_since: datetime) -> bool:
    """Due before this scheduler was watching (the server was down), or found late."""
    return slots.latest < watching_since or slots.passed_over > 0 or now - slots.latest > LATE_AFTER


def decide(
    due: DueSchedule,
    slots: DueSlots,
    now: datetime,
    *,
    watching_since: datetime,
    deadline: timedelta,
    busy: bool,
    waiting: bool,
) -> Decision:
    """What to do with a schedule's latest due slot."""
    catch_up = is_catch_up(slots, now, watching_since)
    outcome, reason = SlotOutcome.FIRED, ""
    age = now - slots.latest
    if catch_up and age > deadline:
        outcome = SlotOutcome.MISSED
        reason = (
            f"found {age.total_seconds():.0f} s late, "
            f"past the {deadline.total_seconds():g} s deadline"
        )
    elif busy and due.overlap is OverlapPolicy.SKIP:
        outcome, reason = SlotOutcome.SKIPPED, "a run of this task was still active"
    elif (busy or waiting) and due.overlap is OverlapPolicy.QUEUE:
        outcome, reason = SlotOutcome.WAITING, "waits for the active run to end"
        if waiting:
            outcome, reason = SlotOutcome.SKIPPED, "a slot was already waiting for the active run"
    return Decision(
        task_id=due.task_id,
        schedule_id=due.schedule_id,
        slot_at=slots.latest,
        outcome=outcome,
        catch_up=catch_up,
        missed_before=slots.passed_over,
        reason=reason,
        next_run_at=slots.next_after,
        due_at=due.next_run_at,
        run_id=uuid4() if outcome is SlotOutcome.FIRED else None,
    )


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class CronMemo:
    """Per-plan memo: many schedules share an expression, zone and due time."""

    specs: dict[str, CronSpec] = field(default_factory=dict)
    zones: dict[str, ZoneInfo] = field(default_factory=dict)
    slots: dict[tuple[str, str, datetime, datetime], DueSlots] = field(default_factory=dict)

    def spec(self, expression: str) -> CronSpec:
        if expression not in self.specs:
            self.specs[expression] = parse_cron(expression)
        return self.specs[expression]

    def zone(self, key: str) -> ZoneInfo:
        if key not in self.zones:
            self.zones[key] = ZoneInfo(key)
        return self.zones[key]

    def due(self, due: DueSchedule, now: datetime, horizon: timedelta) -> DueSlots:
        if now - due.next_run_at < MIN_SLOT_GAP:
            key = (due.spec.fields, due.zone.key, due.next_run_at, due.next_run_at)
            if key not in self.slots:
                upcoming = next_fire_time(due.spec, due.zone, due.next_run_at)
                if upcoming <= now:  # only when a zone's offset has seconds in it
                    return due_slots(due.spec, due.zone, due.next_run_at, now, horizon)
                self.slots[key] = DueSlots(due.next_run_at, 0, upcoming)
            return self.slots[key]
        key = (due.spec.fields, due.zone.key, due.next_run_at, now)
        if key not in self.slots:
            self.slots[key] = due_slots(due.spec, due.zone, due.next_run_at, now, horizon)
        return self.slots[key]


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

    COLUMNS = ("id", "task_id", "cron_expression", "timezone", "overlap", "next_run_at")

    def __init__(self, image_of: ImageOf, memo: CronMemo) -> None:
        self.image_of = image_of
        self.memo = memo
        self.fields = Schedule._meta.fields_map
        self.seen: dict[tuple[str, Any], Any] = {}
        self.images: dict[tuple[Any, Any], str] = {}

    @staticmethod
    def sql(task_count: int | None) -> str:
        """Parameters: enabled, the instant, then `task_count` task ids (None: all tasks)."""
        connection = Schedule._meta.db
        executor = connection.executor_class(model=Schedule, db=connection)
        schedule, task = Schedule._meta.basetable, Task._meta.basetable
        query = (
            connection.query_class.from_(schedule)
            .join(task)
            .on(task.id == schedule.task_id)
            .select(*(schedule[name] for name in DueReader.COLUMNS), task.image, task.script_type)
            .where(schedule.enabled == executor.parameter(0))
            .where(schedule.next_run_at <= executor.parameter(1))
            .orderby(schedule.next_run_at)
        )
        if task_count is not None:
            ids = [executor.parameter(2 + index) for index in range(task_count)]
            query = query.where(schedule.task_id.isin(ids))
        return str(query.get_sql())

    def value(self, name: str, raw: Any) -> Any:
        key = (name, raw)
        if key not in self.seen:
            self.seen[key] = self.fields[name].to_python_value(raw)
        return self.seen[key]

    def image(self, image: str | None, script_type: str) -> str:
        key = (image, script_type)
        if key not in self.images:
            self.images[key] = self.image_of(image, ScriptType(script_type))
        return self.images[key]

    async def read(self, until: datetime, task_ids: Sequence[UUID] | None = None) -> list[DueRow]:
        """Due at or before `until` (of `task_ids` only, when given)."""
        params: list[Any] = [
            self.fields["enabled"].to_db_value(True, Schedule),
            self.fields["next_run_at"].to_db_value(until, Schedule),
        ]
        sql = self.sql(None)
        if task_ids is not None:
            task_key = Task._meta.fields_map["id"]
            params += [task_key.to_db_value(task_id, Task) for task_id in task_ids]
            sql = self.sql(len(task_ids))
        _, rows = await Schedule._meta.db.execute_query(sql, params)
        return [self.row(row) for row in rows]

    def row(self, row: Mapping[str, Any]) -> DueRow:
        task_id = row["task_id"]
        return DueRow(
            DueSchedule(
                schedule_id=row["id"],
                task_id=task_id if isinstance(task_id, UUID) else UUID(task_id),
                spec=self.memo.spec(row["cron_expression"]),
                zone=self.memo.zone(row["timezone"]),
                overlap=self.value("overlap", row["overlap"]),
                next_run_at=self.value("next_run_at", row["next_run_at"]),
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


class Statements:
    """The plan's writes, with their rows converted for the database ahead of time."""

    def __init__(self) -> None:
        self.slots = BulkInsert(ScheduleSlot)
        self.runs = BulkInsert(Run)
        self.pointers = BulkUpdate(Task, ["last_run_id", "updated_at"], ["id"])
        self.slot_recorded_at = self.slots.position("recorded_at")
        self.run_queued_at = self.runs.position("queued_at")
        self.pointer_updated_at = self.pointers.position("updated_at")

    def slot(self, decision: Decision) -> list[Any]:
        return self.slots.params(
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
        pointers = self.pointers
        row: list[Any] = [None] * len(pointers.names)
        row[pointers.position("last_run_id")] = pointers.values.of("last_run_id", decision.run_id)
        row[pointers.position("id")] = pointers.values.of("id", decision.task_id)
        return row

    def run(self, decision: Decision, image: str) -> list[Any] | None:
        if decision.run_id is None:
            return None
        return self.runs.params(
            {
                "id": decision.run_id,
                "task_id": decision.task_id,
                "status": RunStatus.QUEUED,
                "trigger": Trigger.SCHEDULE,
                "image": image,
                "scheduled_for": decision.slot_at,
                "catch_up": decision.catch_up,
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

    def holds(self, now: datetime, generation: int) -> bool:
        return generation == self.generation and self.at <= now <= self.at + PLAN_TOLERANCE

    def settle(self, busy: set[UUID], waiting: set[UUID], now: datetime) -> list[Batch]:
        """The final rows in transaction-sized batches, stamped with `now`."""
        statements = self.statements
        recorded_at = statements.slots.values.of("recorded_at", now)
        queued_at = statements.runs.values.of("queued_at", now)
        pointer_at = statements.pointers.values.of("updated_at", now)
        batches = []
        for group in chunks(self.planned, BATCH_SIZE):
            batch = Batch(statements)
            for planned in group:
                if planned.due.task_id in busy or planned.due.task_id in waiting:
                    self.redecide(planned, busy, waiting)
                decision = planned.decision
                batch.decisions.append(decision)
                slot = planned.slot_params.copy()
                slot[statements.slot_recorded_at] = recorded_at
                batch.slots.append(slot)
                if planned.run_params is not None and planned.pointer_params is not None:
                    run = planned.run_params.copy()
                    run[statements.run_queued_at] = queued_at
                    batch.runs.append(run)
                    pointer = planned.pointer_params.copy()
                    pointer[statements.pointer_updated_at] = pointer_at
                    batch.pointers.append(pointer)
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
    image_of: ImageOf,
) -> DuePlan:
    """Read and decide every slot due at `at`, and convert their rows, without writing."""
    reader = DueReader(image_of, CronMemo())
    plan = DuePlan(at, generation, watching_since, deadline, reader, Statements(), [], [])
    await plan.add(await reader.read(at))
    return plan
