"""Scheduler: one loop that fires due cron slots; `fire_due(now)` is the testable step.

On time at scale: while the loop sleeps it prepares the plan of the next due instant (see
plan.py), so at the due second it only checks which tasks are busy and inserts the rows
(record.py says how each slot is recorded exactly once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from tortoise.exceptions import IntegrityError

from taskdash.core import clock
from taskdash.core.config import Settings
from taskdash.core.models import Schedule, SlotOutcome
from taskdash.logs.hub import LogHub, SubscriptionDropped
from taskdash.scheduling.decide import Decision
from taskdash.scheduling.plan import DuePlan, plan_due
from taskdash.scheduling.record import (
    active_task_ids,
    advance_schedules,
    record_batch,
    record_one_by_one,
    stamp_decided,
    stamp_recorded,
    waiting_task_ids,
)
from taskdash.scheduling.waiting import WaitingSlots

log = logging.getLogger(__name__)

# Safety net: the loop re-reads the schedules at least this often even if nobody wakes it.
MAX_SLEEP_SECONDS = 60.0


class Executor(Protocol):
    """What the scheduler needs of the RunManager: execute a run recorded as queued."""

    def execute(self, run_id: UUID, task_id: UUID, *, script: bytes | None = None) -> None: ...


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        runs: Executor,
        hub: LogHub,
        *,
        watching_since: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.runs = runs
        self.hub = hub
        # Slots due before this instant were missed while no scheduler ran: catch-ups.
        self.watching_since = watching_since
        self.waiting = WaitingSlots(settings)
        self._wakeup = asyncio.Event()
        # Bumped by wake(): a plan made under an older generation no longer holds.
        self._generation = 0
        # Tasks whose schedule changed since the current plan read the database.
        self._changed: set[UUID] = set()
        self._loop: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    # lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the loop (owned by this object); slots due before now are catch-ups."""
        if self.watching_since is None:
            self.watching_since = clock.utcnow()
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

    # the loop --------------------------------------------------------------------------------

    async def _run_loop(self) -> None:
        plan: DuePlan | None = None
        while True:
            self._wakeup.clear()
            try:
                await self.fire_due(clock.utcnow(), plan)
                plan = None
                plan = await self._plan_next()
            except Exception:
                log.exception("the scheduler failed a step; retrying in 5 s")
                plan = None
                await self._sleep_until(time.monotonic() + 5.0)

    async def _plan_next(self) -> DuePlan | None:
        """Plan the next due instant, then sleep until it; None when woken by a change
        that makes the plan useless."""
        due_at = await next_due_at()
        if due_at is None:
            await self._sleep_for(MAX_SLEEP_SECONDS)
            return None
        plan = await self.plan(due_at)
        # A millisecond past due, so an early timer does not wake us just before it.
        while (left := (due_at - clock.utcnow()).total_seconds()) >= 0:
            if not await self._sleep_for(left + 0.001) and not await self._keep(plan):
                return None
        return plan

    async def _keep(self, plan: DuePlan) -> bool:
        """Woken while a plan waits: plan the changed schedules again, unless something is
        now due before the plan's instant (then the plan is dropped)."""
        self._wakeup.clear()
        self._start_runs(await self.waiting.release(clock.utcnow()))
        first = await next_due_at()
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

    async def _watch_run_ends(self) -> None:
        """Wake the loop when a run ends while a queued slot waits for it."""
        while not self.hub.closed:
            with self.hub.subscribe(None) as events:
                try:
                    while True:
                        event = await events.get()
                        if event.kind == "end" and self.waiting.maybe_some:
                            self._wakeup.set()
                except SubscriptionDropped:
                    self._wakeup.set()

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
            settings=self.settings,
        )

    async def fire_due(self, now: datetime, plan: DuePlan | None = None) -> list[Decision]:
        """Decide every due slot at `now`: record it with its run, start the runs, advance.

        `plan`, made ahead for this instant, is used when it still holds.
        """
        released = await self.waiting.release(now)
        self._start_runs(released)
        if plan is not None and plan.holds(now, self._generation):
            changed, self._changed = self._changed, set()
            await plan.refresh(changed)
        else:
            plan = await self.plan(now)
        if not plan.planned and not plan.recorded_before:
            return released
        plan, recorded = await self._record(plan, now)
        # Every slot is committed before the first run is started.
        self._start_runs(recorded)
        await advance_schedules(plan.decisions)
        if any(d.outcome is SlotOutcome.WAITING for d in recorded):
            self.waiting.maybe_some = True
        return released + recorded

    async def _record(self, plan: DuePlan, now: datetime) -> tuple[DuePlan, list[Decision]]:
        """Decide for the busy tasks and commit; answers the plan that was recorded."""
        busy, waiting = await active_task_ids(), await waiting_task_ids()
        recorded: list[Decision] = []
        try:
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

    def _start_runs(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            if decision.run_id is None:
                continue
            try:
                self.runs.execute(decision.run_id, decision.task_id)
            except Exception:
                # It stays queued in the database; the RunManager starts it at the next start.
                log.exception("could not start scheduled run %s", decision.run_id)


async def next_due_at() -> datetime | None:
    first = (
        await Schedule.filter(enabled=True, next_run_at__not_isnull=True)
        .order_by("next_run_at")
        .first()
        .values_list("next_run_at", flat=True)
    )
    assert first is None or isinstance(first, datetime)
    return first
