"""Scheduler: one loop that fires due cron slots; `fire_due(now)` is the testable step.

Exactly once: a slot is recorded in `schedule_slot`, unique on (task, slot_at), in the same
transaction that creates its run. A second decision of the same slot (a retry after a crash,
`fire_due` called twice, another replica) fails that constraint and adds nothing; a crash
after the commit leaves a `queued` run that RunManager.reconcile() starts at the next start.

On time at scale: while the loop sleeps it prepares the plan of the next due instant (see
due_plan.py), so at the due second it only checks which tasks are busy and inserts the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from taskdash.core.bulk import BulkUpdate
from taskdash.core.config import Settings
from taskdash.core.errors import Conflict, NotFound
from taskdash.core.models import (
    ACTIVE_STATUSES,
    OverlapPolicy,
    Run,
    Schedule,
    ScheduleSlot,
    ScriptType,
    SlotOutcome,
    Task,
    Trigger,
    utcnow,
)
from taskdash.logs.hub import LogHub, SubscriptionDropped
from taskdash.scheduling.cron import (
    CronSpec,
    next_fire_time,
    next_fire_times,
    parse_cron,
    parse_timezone,
)
from taskdash.scheduling.plan import Batch, Decision, DuePlan, plan_due

log = logging.getLogger(__name__)

# Safety net: the loop re-reads the schedules at least this often even if nobody wakes it.
MAX_SLEEP_SECONDS = 60.0
SHOWN_FIRE_TIMES = 5
SHOWN_SLOTS = 5
SLOT_RETENTION = timedelta(days=30)
PRUNE_EVERY = timedelta(hours=1)


class Launcher(Protocol):
    """What the scheduler needs from RunManager (tests may pass a recorder)."""

    hub: LogHub

    def launch(self, run_id: UUID, task_id: UUID, *, script: bytes | None = None) -> None: ...

    def image_of(self, task: Task) -> str: ...


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
        # Bumped by wake(): a plan made under an older generation no longer holds.
        self._generation = 0
        # Tasks whose schedule changed since the current plan read the database.
        self._changed: set[UUID] = set()
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

    def wake(self, task_id: UUID | None = None) -> None:
        """The schedule of `task_id` changed (None: any may have): plan it again, recompute
        the next due time now."""
        if task_id is None:
            self._generation += 1
        else:
            self._changed.add(task_id)
        self._wakeup.set()

    async def _run_loop(self) -> None:
        plan: DuePlan | None = None
        while True:
            self._wakeup.clear()
            try:
                await self.fire_due(utcnow(), plan)
                plan = None
                await self._prune(utcnow())
                plan = await self._plan_next()
            except Exception:
                log.exception("the scheduler failed a step; retrying in 5 s")
                plan = None
                await self._sleep_until(time.monotonic() + 5.0)

    async def _plan_next(self) -> DuePlan | None:
        """Plan the next due instant, then sleep until it; None when woken by a change
        that makes the plan useless."""
        due_at = await self.next_due_at()
        if due_at is None:
            await self._sleep_for(MAX_SLEEP_SECONDS)
            return None
        plan = await self.plan(due_at)
        # A millisecond past due, so an early timer does not wake us just before it.
        while (left := (due_at - utcnow()).total_seconds()) >= 0:
            if not await self._sleep_for(left + 0.001) and not await self._keep(plan):
                return None
        return plan

    async def _keep(self, plan: DuePlan) -> bool:
        """Woken while a plan waits: plan the changed schedules again, unless something is
        now due before the plan's instant (then the plan is dropped)."""
        self._wakeup.clear()
        await self.release_waiting(utcnow())
        first = await self.next_due_at()
        if plan.generation != self._generation or (first is not None and first < plan.at):
            return False
        changed, self._changed = self._changed, set()
        await plan.refresh(changed)
        return True

    async def _sleep_for(self, seconds: float) -> bool:
        """True when the time has passed; False when woken or cut at MAX_SLEEP_SECONDS."""
        if seconds <= 0:
            return not self._wakeup.is_set()
        return await self._sleep_until(time.monotonic() + min(seconds, MAX_SLEEP_SECONDS)) and (
            seconds <= MAX_SLEEP_SECONDS
        )

    async def _sleep_until(self, deadline: float) -> bool:
        try:
            await asyncio.wait_for(self._wakeup.wait(), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            return True
        return False

    async def next_due_at(self) -> datetime | None:
        first = (
            await Schedule.filter(enabled=True, next_run_at__not_isnull=True)
            .order_by("next_run_at")
            .first()
            .values_list("next_run_at", flat=True)
        )
        assert first is None or isinstance(first, datetime)
        return first

    async def _watch_run_ends(self) -> None:
        """Wake the loop when a run ends while a queued slot waits for it."""
        while not self.runs.hub.closed:
            with self.runs.hub.subscribe(None) as events:
                try:
                    while True:
                        event = await events.get()
                        if event.kind == "end" and self._has_waiting:
                            self._wakeup.set()
                except SubscriptionDropped:
                    self._wakeup.set()

    async def _prune(self, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        await ScheduleSlot.filter(
            recorded_at__lt=now - SLOT_RETENTION, outcome__not=SlotOutcome.WAITING
        ).delete()

    # the step --------------------------------------------------------------------------------

    async def plan(self, at: datetime) -> DuePlan:
        """Decide every slot due at `at` and prepare its rows, without writing anything."""
        if self.watching_since is None:
            self.watching_since = at
        self._changed.clear()  # the plan reads them as they are now
        return await plan_due(
            at,
            generation=self._generation,
            watching_since=self.watching_since,
            deadline=timedelta(seconds=self.settings.schedule_missed_deadline_seconds),
            image_of=self._image_of,
        )

    def _image_of(self, image: str | None, script_type: ScriptType) -> str:
        return self.runs.image_of(Task(image=image, script_type=script_type))

    async def fire_due(self, now: datetime, plan: DuePlan | None = None) -> list[Decision]:
        """Decide every due slot at `now`: record it with its run, start the runs, advance.

        `plan`, made ahead for this instant, is used when it still holds.
        """
        released = await self.release_waiting(now)
        if plan is not None and plan.holds(now, self._generation):
            changed, self._changed = self._changed, set()
            await plan.refresh(changed)
        else:
            plan = await self.plan(now)
        if not plan.planned and not plan.recorded_before:
            return released
        plan, recorded = await self._record(plan, now)
        # Every slot is committed before the first run is launched.
        self._launch(recorded)
        await advance_schedules(plan.decisions)
        if any(d.outcome is SlotOutcome.WAITING for d in recorded):
            self._has_waiting = True
        return released + recorded

    async def _record(self, plan: DuePlan, now: datetime) -> tuple[DuePlan, list[Decision]]:
        """Decide for the busy tasks and commit; answers the plan that was recorded."""
        busy, waiting = await active_task_ids(), await waiting_task_ids()
        recorded: list[Decision] = []
        try:
            with paused_gc():
                for batch in stamp_decided(plan.settle(busy, waiting, now)):
                    await record_batch(batch)
                    stamp_recorded(batch.decisions, recorded)
        except IntegrityError:
            # Some slot was decided elsewhere meanwhile (or its task deleted): decide again from
            # the database; what this step committed already now counts as recorded before.
            log.warning("a due slot changed under the scheduler; deciding again one by one")
            plan = await self.plan(now)
            for batch in stamp_decided(plan.settle(busy, waiting, now)):
                await record_one_by_one(batch, recorded)
        return plan, recorded

    def _launch(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            if decision.run_id is not None:
                self._launch_one(decision.run_id, decision.task_id)

    def _launch_one(self, run_id: UUID, task_id: UUID) -> None:
        try:
            self.runs.launch(run_id, task_id)
        except Exception:
            # It stays queued in the database; reconcile starts it at the next start.
            log.exception("could not launch scheduled run %s", run_id)

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
        task = await Task.get_or_none(id=task_id).only("id", "image", "script_type")
        if task is None:
            return None
        try:
            async with in_transaction():
                run = await Run.create(
                    task_id=task_id,
                    trigger=Trigger.SCHEDULE,
                    image=self.runs.image_of(task),
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
        self._launch_one(run.id, task_id)
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
        self.wake(task_id)
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
        self.wake(task_id)

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
    decided = utcnow()
    for batch in batches:
        for decision in batch.decisions:
            decision.decided_at = decided
    return batches


def stamp_recorded(decisions: list[Decision], recorded: list[Decision]) -> None:
    committed = utcnow()
    for decision in decisions:
        decision.recorded_at = committed
    recorded += decisions


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while the due second's rows are written.

    With 10,000 planned slots alive a full collection can take longer than the whole write
    (it holds the GIL the database thread needs); the few cycles made meanwhile are collected
    right after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def advance_schedules(decisions: list[Decision]) -> None:
    """Move each schedule past its decided slot, unless it was changed meanwhile."""
    where = ["id", "next_run_at"]
    fired = BulkUpdate(Schedule, ["next_run_at", "last_run_at"], where)
    other = BulkUpdate(Schedule, ["next_run_at"], where)
    fired_rows, other_rows = [], []
    for d in decisions:
        if d.outcome is SlotOutcome.FIRED:
            fired_rows.append(fired.params([d.next_run_at, d.slot_at, d.schedule_id, d.due_at]))
        else:
            other_rows.append(other.params([d.next_run_at, d.schedule_id, d.due_at]))
    async with in_transaction() as connection:
        await fired.execute(connection, fired_rows)
        await other.execute(connection, other_rows)


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
