"""Scheduler: one loop that fires due cron slots; `fire_due(now)` is the testable step.

Exactly once: a slot is recorded in `schedule_slot`, unique on (task, slot_at), in the same
transaction that creates its run. A second decision of the same slot (a retry after a crash,
`fire_due` called twice, another replica) fails that constraint and adds nothing; a crash
after the commit leaves a `queued` run that RunManager.reconcile() starts at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction

from taskdash.config import Settings
from taskdash.cron import (
    CronSpec,
    DueSlots,
    due_slots,
    next_fire_time,
    next_fire_times,
    parse_cron,
    parse_timezone,
)
from taskdash.errors import Conflict, NotFound
from taskdash.logs import LogHub, SubscriptionDropped
from taskdash.models import (
    ACTIVE_STATUSES,
    OverlapPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleSlot,
    ScriptType,
    SlotOutcome,
    Task,
    Trigger,
    utcnow,
)

log = logging.getLogger(__name__)

# Safety net: the loop re-reads the schedules at least this often even if nobody wakes it.
MAX_SLEEP_SECONDS = 60.0
# A slot decided later than this after it was due counts as a catch-up (the loop was stalled).
LATE_AFTER = timedelta(seconds=60)
# Cron fires on whole minutes, so a slot younger than this is the only one due.
MIN_SLOT_GAP = timedelta(seconds=60)
BATCH_SIZE = 500
SHOWN_FIRE_TIMES = 5
SHOWN_SLOTS = 5
SLOT_RETENTION = timedelta(days=30)
PRUNE_EVERY = timedelta(hours=1)


class Launcher(Protocol):
    """What the scheduler needs from RunManager (tests may pass a recorder)."""

    hub: LogHub

    def launch(self, run: Run, *, script: bytes | None = None) -> None: ...

    def image_of(self, task: Task) -> str: ...


# decisions (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DueSchedule:
    schedule_id: int
    task_id: UUID
    spec: CronSpec
    zone: ZoneInfo
    overlap: OverlapPolicy
    next_run_at: datetime


@dataclass(frozen=True)
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
    )


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# JSON shapes ----------------------------------------------------------------------------------


class SlotOut(BaseModel):
    slot_at: datetime
    outcome: SlotOutcome
    run_id: UUID | None
    catch_up: bool
    missed_before: int
    reason: str
    recorded_at: datetime


class ScheduleOut(BaseModel):
    task_id: UUID
    cron_expression: str
    timezone: str
    enabled: bool
    overlap: OverlapPolicy
    next_run_at: datetime | None
    last_run_at: datetime | None
    next_run_times: list[datetime]
    next_run_times_utc: list[datetime]
    recent_slots: list[SlotOut]
    created_at: datetime
    updated_at: datetime


@dataclass
class CronMemo:
    """Per-call memo: many schedules share an expression, zone and due time."""

    specs: dict[str, CronSpec] = field(default_factory=dict)
    slots: dict[tuple[str, str, datetime, datetime], DueSlots] = field(default_factory=dict)

    def spec(self, expression: str) -> CronSpec:
        if expression not in self.specs:
            self.specs[expression] = parse_cron(expression)
        return self.specs[expression]

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


@dataclass
class Step:
    """What one `fire_due` call knows: tasks with an active run or a waiting slot."""

    busy: set[UUID]
    waiting: set[UUID]
    memo: CronMemo = field(default_factory=CronMemo)


class SlotTaken(Exception):
    """Someone else decided this slot first; roll the transaction back."""


class Scheduler:
    def __init__(
        self, settings: Settings, runs: Launcher, *, watching_since: datetime | None = None
    ) -> None:
        self.settings = settings
        self.runs = runs
        # Slots due before this instant were missed while no scheduler ran: catch-ups.
        self.watching_since = watching_since
        self._wakeup = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._has_waiting = True
        self._pruned_at: datetime | None = None

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the loop (owned by this object); slots due before now are catch-ups."""
        if self.watching_since is None:
            self.watching_since = utcnow()
        self._loop = asyncio.create_task(self._run_loop(), name="scheduler")
        self._watcher = asyncio.create_task(self._watch_run_ends(), name="scheduler-watch")

    async def close(self) -> None:
        """Cancel and await the loop."""
        for job in (self._watcher, self._loop):
            if job is not None:
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
        self._loop = self._watcher = None

    def wake(self) -> None:
        """A schedule changed: recompute the next due time now."""
        self._wakeup.set()

    async def _run_loop(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                await self.fire_due(utcnow())
                await self._prune(utcnow())
                pause = await self.seconds_to_next_due(utcnow())
            except Exception:
                log.exception("the scheduler failed a step; retrying in 5 s")
                pause = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), pause)

    async def seconds_to_next_due(self, now: datetime) -> float:
        first = (
            await Schedule.filter(enabled=True, next_run_at__not_isnull=True)
            .order_by("next_run_at")
            .first()
            .values_list("next_run_at", flat=True)
        )
        if first is None:
            return MAX_SLEEP_SECONDS
        assert isinstance(first, datetime)
        # A millisecond past due, so an early timer does not wake us just before it.
        return min(max((first - now).total_seconds() + 0.001, 0.0), MAX_SLEEP_SECONDS)

    async def _watch_run_ends(self) -> None:
        """Wake the loop when a run ends while a queued slot waits for it."""
        while True:
            with self.runs.hub.subscribe(None) as events:
                try:
                    while True:
                        event = await events.get()
                        if event.kind == "end" and self._has_waiting:
                            self.wake()
                except SubscriptionDropped:
                    self.wake()

    async def _prune(self, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        await ScheduleSlot.filter(
            recorded_at__lt=now - SLOT_RETENTION, outcome__not=SlotOutcome.WAITING
        ).delete()

    # the step --------------------------------------------------------------------------------

    async def fire_due(self, now: datetime) -> list[Decision]:
        """Decide every due slot at `now`: record it with its run, start the runs, advance."""
        if self.watching_since is None:
            self.watching_since = now
        released = await self.release_waiting(now)
        due = await self._load_due(now)
        if not due:
            return released
        step = Step(busy=await active_task_ids(), waiting=await waiting_task_ids())
        decided: list[Decision] = []
        recorded: list[tuple[Decision, dict[str, Any] | None]] = []
        for batch in chunks(due, BATCH_SIZE):
            decisions = self._decide_batch(batch, now, step)
            decided += decisions
            recorded += await self._record(decisions, now)
        # Every slot is committed before the first run object is built and launched.
        self._launch([Run(**row) for _, row in recorded if row is not None])
        await advance_schedules(decided)
        if any(d.outcome is SlotOutcome.WAITING for d, _ in recorded):
            self._has_waiting = True
        return released + [d for d, _ in recorded]

    async def _load_due(self, now: datetime) -> list[dict[str, Any]]:
        rows = await (
            Schedule.filter(enabled=True, next_run_at__lte=now)
            .order_by("next_run_at")
            .values("id", "task_id", "cron_expression", "timezone", "overlap", "next_run_at")
        )
        return list(rows)

    def _due_schedule(self, row: dict[str, Any], memo: CronMemo) -> DueSchedule:
        return DueSchedule(
            schedule_id=row["id"],
            task_id=row["task_id"],
            spec=memo.spec(row["cron_expression"]),
            zone=ZoneInfo(row["timezone"]),
            overlap=OverlapPolicy(row["overlap"]),
            next_run_at=row["next_run_at"],
        )

    def _decide_batch(
        self, rows: Sequence[dict[str, Any]], now: datetime, step: Step
    ) -> list[Decision]:
        assert self.watching_since is not None
        deadline = timedelta(seconds=self.settings.schedule_missed_deadline_seconds)
        horizon = deadline + timedelta(days=1)
        decisions = []
        for row in rows:
            due = self._due_schedule(row, step.memo)
            decisions.append(
                decide(
                    due,
                    step.memo.due(due, now, horizon),
                    now,
                    watching_since=self.watching_since,
                    deadline=deadline,
                    busy=due.task_id in step.busy,
                    waiting=due.task_id in step.waiting,
                )
            )
        return decisions

    async def _record(
        self, decisions: list[Decision], now: datetime
    ) -> list[tuple[Decision, dict[str, Any] | None]]:
        """Write slots and runs together; an already decided slot is left out, not redone."""
        fresh = await undecided(decisions)
        if not fresh:
            return []
        images = await self._images_of([d.task_id for d in fresh])
        try:
            return await record_slots(fresh, images, now)
        except IntegrityError:
            # Raced with another scheduler on some slot: go one by one, each on its own.
            recorded = []
            for decision in fresh:
                with contextlib.suppress(IntegrityError):
                    recorded += await record_slots([decision], images, now)
            return recorded

    async def _images_of(self, task_ids: list[UUID]) -> dict[UUID, str]:
        rows = await Task.filter(id__in=task_ids).values_list("id", "image", "script_type")
        images: dict[tuple[str | None, str], str] = {}
        for _, image, script_type in rows:
            if (image, script_type) not in images:
                kind = Task(image=image, script_type=ScriptType(script_type))
                images[(image, script_type)] = self.runs.image_of(kind)
        return {UUID(str(task_id)): images[(image, kind)] for task_id, image, kind in rows}

    def _launch(self, runs: Iterable[Run]) -> None:
        for run in runs:
            try:
                self.runs.launch(run)
            except Exception:
                # It stays queued in the database; reconcile starts it at the next start.
                log.exception("could not launch scheduled run %s", run.id)

    # queue policy ----------------------------------------------------------------------------

    async def release_waiting(self, now: datetime) -> list[Decision]:
        """Start the waiting slot of each task whose active run has ended."""
        if not self._has_waiting:
            return []
        slots = await ScheduleSlot.filter(outcome=SlotOutcome.WAITING).order_by("slot_at")
        self._has_waiting = bool(slots)
        busy = await active_task_ids([UUID(str(slot.task_id)) for slot in slots])
        released = []
        for slot in slots:
            task_id = UUID(str(slot.task_id))
            if task_id in busy:
                continue
            busy.add(task_id)
            run = await self._start_waiting(slot, task_id, now)
            if run is not None:
                released.append(released_decision(slot, task_id, run))
        return released

    async def _start_waiting(self, slot: ScheduleSlot, task_id: UUID, now: datetime) -> Run | None:
        images = await self._images_of([task_id])
        if task_id not in images:
            return None
        try:
            async with in_transaction():
                run = await Run.create(
                    task_id=task_id,
                    trigger=Trigger.SCHEDULE,
                    image=images[task_id],
                    scheduled_for=slot.slot_at,
                    catch_up=slot.catch_up,
                )
                taken = await ScheduleSlot.filter(id=slot.id, outcome=SlotOutcome.WAITING).update(
                    outcome=SlotOutcome.FIRED, run_id=run.id, reason="started after the active run"
                )
                if not taken:
                    raise SlotTaken
                await Task.filter(id=task_id).update(last_run_id=run.id, updated_at=now)
        except SlotTaken:
            return None
        self._launch([run])
        return run

    # schedules -------------------------------------------------------------------------------

    async def set_schedule(
        self,
        task_id: UUID,
        cron_expression: str,
        timezone: str | None = None,
        *,
        enabled: bool = True,
        overlap: OverlapPolicy = OverlapPolicy.SKIP,
    ) -> tuple[Schedule, bool]:
        """Create or replace the task's schedule; answers it and whether it is new."""
        await schedulable_task(task_id)
        spec = parse_cron(cron_expression)
        zone = parse_timezone(timezone or self.settings.default_timezone)
        schedule = await Schedule.get_or_none(task_id=task_id)
        now = utcnow()
        values: dict[str, Any] = {
            "cron_expression": spec.expression,
            "timezone": zone.key,
            "enabled": enabled,
            "overlap": overlap,
            "next_run_at": self._next_run_at(schedule, spec, zone, enabled, now),
            "updated_at": now,
        }
        created = schedule is None
        if schedule is None:
            schedule = await Schedule.create(task_id=task_id, **values)
        else:
            await schedule.update_from_dict(values).save()
        await self._settle_waiting(schedule)
        self.wake()
        return schedule, created

    def _next_run_at(
        self,
        current: Schedule | None,
        spec: CronSpec,
        zone: ZoneInfo,
        enabled: bool,
        now: datetime,
    ) -> datetime | None:
        """Keep a pending slot when the times do not change, so saving never drops a due slot."""
        if not enabled:
            return None
        unchanged = (
            current is not None
            and current.enabled
            and current.next_run_at is not None
            and current.cron_expression == spec.expression
            and current.timezone == zone.key
        )
        if unchanged and current is not None:
            return current.next_run_at
        return next_fire_time(spec, zone, now)

    async def update_schedule(
        self,
        task_id: UUID,
        *,
        cron_expression: str | None = None,
        timezone: str | None = None,
        enabled: bool | None = None,
        overlap: OverlapPolicy | None = None,
    ) -> Schedule:
        """Change some of the schedule's settings (pause and resume with `enabled`)."""
        current = await self.get_schedule(task_id)
        schedule, _ = await self.set_schedule(
            task_id,
            cron_expression or current.cron_expression,
            timezone or current.timezone,
            enabled=current.enabled if enabled is None else enabled,
            overlap=overlap or current.overlap,
        )
        return schedule

    async def remove_schedule(self, task_id: UUID) -> None:
        """Delete the task's schedule; its recorded slots stay as history."""
        schedule = await self.get_schedule(task_id)
        await schedule.delete()
        await cancel_waiting(task_id, "the schedule was removed")
        self.wake()

    async def get_schedule(self, task_id: UUID) -> Schedule:
        schedule = await Schedule.get_or_none(task_id=task_id)
        if schedule is None:
            raise NotFound(f"task {task_id} has no schedule", code="schedule_not_found")
        return schedule

    async def _settle_waiting(self, schedule: Schedule) -> None:
        if not schedule.enabled:
            await cancel_waiting(UUID(str(schedule.task_id)), "the schedule was paused")
        elif schedule.overlap is not OverlapPolicy.QUEUE:
            await cancel_waiting(UUID(str(schedule.task_id)), "the overlap policy changed")

    async def schedule_json_for(self, task_id: UUID) -> dict[str, Any] | None:
        schedule = await Schedule.get_or_none(task_id=task_id)
        if schedule is None:
            return None
        return (await schedule_out(schedule)).model_dump(mode="json")


# database steps -------------------------------------------------------------------------------


async def schedulable_task(task_id: UUID) -> Task:
    task = await Task.get_or_none(id=task_id).only("id", "script")
    if task is None:
        raise NotFound(f"no task with id {task_id}", code="task_not_found")
    if task.script is None:
        raise Conflict(
            "this task's script was not kept (it was created with upload=false), so it cannot "
            "be scheduled: upload it again with upload=true",
            code="script_not_kept",
        )
    return task


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


async def undecided(decisions: list[Decision]) -> list[Decision]:
    """Leave out slots already recorded (by an earlier call, or before a crash)."""
    task_ids = [d.task_id for d in decisions]
    slot_times = list({d.slot_at for d in decisions})
    rows = await ScheduleSlot.filter(task_id__in=task_ids, slot_at__in=slot_times).values_list(
        "task_id", "slot_at"
    )
    taken = {(UUID(str(task_id)), slot_at) for task_id, slot_at in rows}
    return [d for d in decisions if (d.task_id, d.slot_at) not in taken]


async def record_slots(
    decisions: list[Decision], images: dict[UUID, str], now: datetime
) -> list[tuple[Decision, dict[str, Any] | None]]:
    """One transaction: the slots, the runs of the fired ones, and the tasks' latest run."""
    runs = {
        d.task_id: run_row(d, images[d.task_id], now)
        for d in decisions
        if d.outcome is SlotOutcome.FIRED and d.task_id in images
    }
    slots = [slot_row(d, runs.get(d.task_id), now) for d in decisions]
    async with in_transaction() as connection:
        await insert_rows(connection, ScheduleSlot, slots)
        if runs:
            await insert_rows(connection, Run, list(runs.values()))
            pointers = [[run["id"], now, run["task_id"]] for run in runs.values()]
            await update_rows(connection, Task, ["last_run_id", "updated_at"], ["id"], pointers)
    committed = utcnow()
    return [(recorded(d, runs.get(d.task_id), committed), runs.get(d.task_id)) for d in decisions]


def recorded(decision: Decision, run: dict[str, Any] | None, at: datetime) -> Decision:
    return replace(decision, run_id=run["id"] if run else None, recorded_at=at)


def run_row(decision: Decision, image: str, now: datetime) -> dict[str, Any]:
    return {
        "id": uuid4(),
        "task_id": decision.task_id,
        "status": RunStatus.QUEUED,
        "trigger": Trigger.SCHEDULE,
        "image": image,
        "queued_at": now,
        "scheduled_for": decision.slot_at,
        "catch_up": decision.catch_up,
    }


def slot_row(decision: Decision, run: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    return {
        "task_id": decision.task_id,
        "slot_at": decision.slot_at,
        "outcome": decision.outcome,
        "run_id": run["id"] if run else None,
        "catch_up": decision.catch_up,
        "missed_before": decision.missed_before,
        "reason": decision.reason,
        "recorded_at": now,
    }


async def advance_schedules(decisions: list[Decision]) -> None:
    """Move each schedule past its decided slot, unless it was changed meanwhile."""
    fired = [
        [d.next_run_at, d.slot_at, d.schedule_id, d.due_at]
        for d in decisions
        if d.outcome is SlotOutcome.FIRED
    ]
    other = [
        [d.next_run_at, d.schedule_id, d.due_at]
        for d in decisions
        if d.outcome is not SlotOutcome.FIRED
    ]
    where = ["id", "next_run_at"]
    async with in_transaction() as connection:
        if fired:
            await update_rows(connection, Schedule, ["next_run_at", "last_run_at"], where, fired)
        if other:
            await update_rows(connection, Schedule, ["next_run_at"], where, other)


# bulk writes without building model objects (10,000 of them cost more than the SQL) -----------


def field_default(model: type[Model], name: str) -> Any:
    default = model._meta.fields_map[name].default
    return default() if callable(default) else default


class DbValues:
    """The ORM's own per-field conversion, done once per distinct value (most repeat)."""

    def __init__(self, model: type[Model]) -> None:
        self.model = model
        self.fields = model._meta.fields_map
        self.seen: dict[tuple[str, Any], Any] = {}

    def of(self, name: str, value: Any) -> Any:
        try:
            return self.seen[(name, value)]
        except KeyError:
            converted = self.fields[name].to_db_value(value, self.model)
            self.seen[(name, value)] = converted
            return converted
        except TypeError:  # unhashable (a JSON value)
            return self.fields[name].to_db_value(value, self.model)


async def insert_rows(
    connection: BaseDBAsyncClient, model: type[Model], rows: list[dict[str, Any]]
) -> None:
    """The ORM's own INSERT statement and value conversions, one executemany."""
    executor = connection.executor_class(model=model, db=connection)
    columns = executor.regular_columns
    defaults = {name: field_default(model, name) for name in columns}
    values = DbValues(model)
    await connection.execute_many(
        executor.insert_query,
        [[values.of(name, row.get(name, defaults[name])) for name in columns] for row in rows],
    )


async def update_rows(
    connection: BaseDBAsyncClient,
    model: type[Model],
    columns: list[str],
    keys: list[str],
    rows: list[list[Any]],
) -> None:
    """UPDATE model SET columns WHERE keys, once per row (values: columns then keys)."""
    executor = connection.executor_class(model=model, db=connection)
    table = model._meta.basetable
    query = connection.query_class.update(table)
    for index, name in enumerate(columns):
        query = query.set(table[name], executor.parameter(index))
    for index, name in enumerate(keys):
        query = query.where(table[name] == executor.parameter(len(columns) + index))
    fields = model._meta.fields_map
    names = columns + keys
    values = [
        [fields[n].to_db_value(v, model) for n, v in zip(names, row, strict=True)] for row in rows
    ]
    await connection.execute_many(query.get_sql(), values)


async def cancel_waiting(task_id: UUID, reason: str) -> None:
    await ScheduleSlot.filter(task_id=task_id, outcome=SlotOutcome.WAITING).update(
        outcome=SlotOutcome.SKIPPED, reason=reason
    )


def released_decision(slot: ScheduleSlot, task_id: UUID, run: Run) -> Decision:
    return Decision(
        task_id=task_id,
        schedule_id=0,
        slot_at=slot.slot_at,
        outcome=SlotOutcome.FIRED,
        catch_up=slot.catch_up,
        missed_before=slot.missed_before,
        reason="started after the active run",
        next_run_at=slot.slot_at,
        due_at=slot.slot_at,
        run_id=run.id,
    )


async def schedule_out(schedule: Schedule) -> ScheduleOut:
    zone = ZoneInfo(schedule.timezone)
    upcoming: list[datetime] = []
    if schedule.enabled and schedule.next_run_at is not None:
        spec = parse_cron(schedule.cron_expression)
        first = schedule.next_run_at
        upcoming = [first, *next_fire_times(spec, zone, first, SHOWN_FIRE_TIMES - 1)]
    slots = (
        await ScheduleSlot.filter(task_id=schedule.task_id).order_by("-slot_at").limit(SHOWN_SLOTS)
    )
    return ScheduleOut(
        task_id=UUID(str(schedule.task_id)),
        cron_expression=schedule.cron_expression,
        timezone=schedule.timezone,
        enabled=schedule.enabled,
        overlap=schedule.overlap,
        next_run_at=schedule.next_run_at,
        last_run_at=schedule.last_run_at,
        next_run_times=[time.astimezone(zone) for time in upcoming],
        next_run_times_utc=upcoming,
        recent_slots=[slot_out(slot) for slot in slots],
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


def slot_out(slot: ScheduleSlot) -> SlotOut:
    return SlotOut(
        slot_at=slot.slot_at,
        outcome=slot.outcome,
        run_id=slot.run_id,
        catch_up=slot.catch_up,
        missed_before=slot.missed_before,
        reason=slot.reason,
        recorded_at=slot.recorded_at,
    )
