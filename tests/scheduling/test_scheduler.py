"""Scheduler decisions on a real SQLite file, driven by `fire_due(now)` with a set clock.

Launches are recorded instead of starting containers: these tests are about which slots fire,
when, and how often; the end-to-end test starts real containers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from tortoise.exceptions import IntegrityError

from taskdash.core.config import Settings, load_settings
from taskdash.core.db import close_database, open_database
from taskdash.core.errors import BadRequest, Conflict, NotFound
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
from taskdash.logs.hub import LogHub
from taskdash.scheduling.plan import DuePlan
from taskdash.scheduling.record import record_batch
from taskdash.scheduling.scheduler import Scheduler
from taskdash.scheduling.schedules import ScheduleBook, ScheduleChange
from taskdash.web.schemas import schedule_json

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


class RecordingLauncher:
    """RunManager's execute side, recording what it was asked to start."""

    def __init__(self, settings: Settings, hub: LogHub) -> None:
        self.settings = settings
        self.hub = hub
        self.launched: list[UUID] = []
        self.crash = False
        self.event = asyncio.Event()

    def execute(self, run_id: UUID, task_id: UUID, *, script: bytes | None = None) -> None:
        if self.crash:
            raise Crash
        self.launched.append(run_id)
        self.event.set()


def book_of(scheduler: Scheduler) -> ScheduleBook:
    return ScheduleBook(scheduler.settings, scheduler.wake)


async def set_schedule(
    scheduler: Scheduler,
    task_id: UUID,
    cron: str,
    zone: str | None = None,
    *,
    enabled: bool | None = None,
    overlap: OverlapPolicy | None = None,
) -> tuple[Schedule, bool]:
    return await book_of(scheduler).set(task_id, ScheduleChange(cron, zone, enabled, overlap))


async def update_schedule(scheduler: Scheduler, task_id: UUID, **change: Any) -> Schedule:
    return await book_of(scheduler).change(task_id, ScheduleChange(**change))


async def remove_schedule(scheduler: Scheduler, task_id: UUID) -> None:
    await book_of(scheduler).remove(task_id)


async def schedule_json_of(scheduler: Scheduler, task_id: UUID) -> dict[str, Any] | None:
    return schedule_json(await book_of(scheduler).find_view(task_id))


async def launched_runs(launcher: RecordingLauncher) -> list[Run]:
    """The runs handed to the launcher, in launch order."""
    runs = {run.id: run for run in await Run.filter(id__in=launcher.launched)}
    return [runs[run_id] for run_id in launcher.launched]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
async def settings(tmp_path: Path) -> AsyncIterator[Settings]:
    settings = load_settings(data_dir=tmp_path / "data", schedule_missed_deadline_seconds=300)
    database = await open_database(settings)
    yield settings
    await close_database(database)


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(T0 - timedelta(seconds=30))
    monkeypatch.setattr("taskdash.core.clock.utcnow", clock)
    return clock


@pytest.fixture()
def launcher(settings: Settings) -> RecordingLauncher:
    return RecordingLauncher(settings, LogHub())


def new_scheduler(
    settings: Settings, launcher: RecordingLauncher, *, watching_since: datetime | None = None
) -> Scheduler:
    return Scheduler(settings, launcher, launcher.hub, watching_since=watching_since)


@pytest.fixture()
def scheduler(settings: Settings, launcher: RecordingLauncher) -> Scheduler:
    return new_scheduler(settings, launcher, watching_since=T0 - timedelta(hours=1))


async def make_task(name: str = "job", *, kept: bool = True) -> Task:
    return await Task.create(
        name=name, script_type=ScriptType.SHELL, script=b"echo hi\n" if kept else None
    )


async def scheduled_task(
    scheduler: Scheduler,
    cron: str = "* * * * *",
    *,
    zone: str = "UTC",
    overlap: OverlapPolicy = OverlapPolicy.SKIP,
) -> Task:
    task = await make_task()
    await set_schedule(scheduler, task.id, cron, zone, overlap=overlap)
    return task


async def schedule_of(task: Task) -> Schedule:
    return await Schedule.get(task_id=task.id)


async def slots_of(task: Task) -> list[ScheduleSlot]:
    return list(await ScheduleSlot.filter(task_id=task.id).order_by("slot_at"))


async def scheduled_runs(task: Task) -> list[Run]:
    return list(await Run.filter(task_id=task.id, trigger=Trigger.SCHEDULE).order_by("queued_at"))


async def busy(task: Task) -> Run:
    return await Run.create(task=task, status=RunStatus.RUNNING, trigger=Trigger.API)


# due, not due, paused -------------------------------------------------------------------------


async def test_a_due_slot_fires_once_with_its_run_recorded(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler)
    assert (await schedule_of(task)).next_run_at == T0

    assert await scheduler.fire_due(T0 - timedelta(seconds=1)) == []
    decisions = await scheduler.fire_due(T0)

    assert [(d.outcome, d.slot_at, d.catch_up) for d in decisions] == [
        (SlotOutcome.FIRED, T0, False)
    ]
    [run] = await launched_runs(launcher)
    stored = await Run.get(id=run.id)
    assert stored.trigger is Trigger.SCHEDULE
    assert stored.status is RunStatus.QUEUED
    assert stored.scheduled_for == T0
    assert stored.catch_up is False
    assert (await Task.get(id=task.id)).last_run_id == run.id
    schedule = await schedule_of(task)
    assert (schedule.next_run_at, schedule.last_run_at) == (T0 + MINUTE, T0)
    [slot] = await slots_of(task)
    assert (slot.outcome, slot.run_id, slot.slot_at) == (SlotOutcome.FIRED, run.id, T0)


async def test_each_minute_fires_once_when_driven_like_the_loop(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler, "*/2 * * * *", overlap=OverlapPolicy.ALLOW)
    for second in range(0, 10 * 60, 15):
        await scheduler.fire_due(T0 + timedelta(seconds=second))
    fired = [run.scheduled_for for run in await scheduled_runs(task)]
    assert fired == [T0 + n * 2 * MINUTE for n in range(5)]
    assert len(launcher.launched) == 5


async def test_a_paused_schedule_does_not_fire_and_resumes_from_now(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler)
    await update_schedule(scheduler, task.id, enabled=False)
    assert (await schedule_of(task)).next_run_at is None

    assert await scheduler.fire_due(T0 + 5 * MINUTE) == []

    clock.now = T0 + 5 * MINUTE + timedelta(seconds=30)
    await update_schedule(scheduler, task.id, enabled=True)
    assert (await schedule_of(task)).next_run_at == T0 + 6 * MINUTE
    await scheduler.fire_due(T0 + 6 * MINUTE)
    assert [run.scheduled_for for run in await launched_runs(launcher)] == [T0 + 6 * MINUTE]


async def test_saving_an_unchanged_schedule_keeps_its_pending_slot(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler)
    clock.now = T0 + timedelta(milliseconds=300)  # due, but the loop has not fired it yet
    await set_schedule(scheduler, task.id, "* * * * *", "UTC", overlap=OverlapPolicy.ALLOW)
    await scheduler.fire_due(clock.now)
    assert [run.scheduled_for for run in await launched_runs(launcher)] == [T0]


async def test_a_removed_schedule_stops_firing(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler)
    await remove_schedule(scheduler, task.id)
    assert await schedule_json_of(scheduler, task.id) is None
    assert await scheduler.fire_due(T0 + MINUTE) == []
    with pytest.raises(NotFound):
        await remove_schedule(scheduler, task.id)


# overlap --------------------------------------------------------------------------------------


async def test_overlap_skip_records_the_skipped_slot(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler)
    await busy(task)
    [decision] = await scheduler.fire_due(T0)
    assert decision.outcome is SlotOutcome.SKIPPED
    assert launcher.launched == []
    [slot] = await slots_of(task)
    assert (slot.outcome, slot.run_id) == (SlotOutcome.SKIPPED, None)
    assert "still active" in slot.reason
    assert (await schedule_of(task)).next_run_at == T0 + MINUTE


async def test_overlap_queue_starts_one_waiting_slot_when_the_run_ends(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler, overlap=OverlapPolicy.QUEUE)
    active = await busy(task)
    assert [d.outcome for d in await scheduler.fire_due(T0)] == [SlotOutcome.WAITING]
    # Only one slot waits; the next one, still behind the same run, is skipped.
    assert [d.outcome for d in await scheduler.fire_due(T0 + MINUTE)] == [SlotOutcome.SKIPPED]
    assert launcher.launched == []

    await Run.filter(id=active.id).update(status=RunStatus.SUCCEEDED)
    released = await scheduler.fire_due(T0 + MINUTE + timedelta(seconds=20))

    assert [(d.outcome, d.slot_at) for d in released] == [(SlotOutcome.FIRED, T0)]
    [run] = await launched_runs(launcher)
    assert run.scheduled_for == T0
    outcomes = [(s.slot_at, s.outcome, s.run_id) for s in await slots_of(task)]
    assert outcomes == [(T0, SlotOutcome.FIRED, run.id), (T0 + MINUTE, SlotOutcome.SKIPPED, None)]
    assert await scheduler.fire_due(T0 + MINUTE + timedelta(seconds=30)) == []


async def test_pausing_drops_the_waiting_slot(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler, overlap=OverlapPolicy.QUEUE)
    active = await busy(task)
    await scheduler.fire_due(T0)
    await update_schedule(scheduler, task.id, enabled=False)
    await Run.filter(id=active.id).update(status=RunStatus.SUCCEEDED)
    assert await scheduler.fire_due(T0 + 2 * MINUTE) == []
    [slot] = await slots_of(task)
    assert (slot.outcome, slot.reason) == (SlotOutcome.SKIPPED, "the schedule was paused")


async def test_overlap_allow_fires_next_to_an_active_run(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler, overlap=OverlapPolicy.ALLOW)
    await busy(task)
    assert [d.outcome for d in await scheduler.fire_due(T0)] == [SlotOutcome.FIRED]
    assert len(launcher.launched) == 1


# missed slots ---------------------------------------------------------------------------------


async def test_missed_slots_fire_once_for_the_latest_within_the_deadline(
    settings: Settings, launcher: RecordingLauncher, clock: Clock
) -> None:
    before = new_scheduler(settings, launcher, watching_since=T0 - MINUTE)
    task = await scheduled_task(before)
    # The server was down from before T0 until T0+10:30; it starts and decides at once.
    restarted = T0 + 10 * MINUTE + timedelta(seconds=30)
    after = new_scheduler(settings, launcher, watching_since=restarted)
    [decision] = await after.fire_due(restarted)

    assert (decision.outcome, decision.slot_at) == (SlotOutcome.FIRED, T0 + 10 * MINUTE)
    assert decision.catch_up and decision.missed_before == 10
    [run] = await launched_runs(launcher)
    assert (await Run.get(id=run.id)).catch_up is True
    assert (await schedule_of(task)).next_run_at == T0 + 11 * MINUTE
    assert len(await slots_of(task)) == 1


async def test_a_missed_slot_older_than_the_deadline_is_recorded_not_fired(
    settings: Settings, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(new_scheduler(settings, launcher), "0 * * * *")
    assert (await schedule_of(task)).next_run_at == T0
    restarted = T0 + 2 * timedelta(hours=1) + 20 * MINUTE  # latest slot 12:00, 20 min old
    [decision] = await Scheduler(
        settings, launcher, launcher.hub, watching_since=restarted
    ).fire_due(restarted)

    assert decision.outcome is SlotOutcome.MISSED
    assert decision.slot_at == T0 + timedelta(hours=2)
    assert "deadline" in decision.reason
    assert launcher.launched == []
    assert (await schedule_of(task)).next_run_at == T0 + timedelta(hours=3)


async def test_a_longer_deadline_catches_up_the_same_outage(tmp_path: Path, clock: Clock) -> None:
    long = load_settings(data_dir=tmp_path / "long", schedule_missed_deadline_seconds=3600)
    database = await open_database(long)
    try:
        launcher = RecordingLauncher(long, LogHub())
        task = await scheduled_task(new_scheduler(long, launcher), "0 * * * *")
        restarted = T0 + 2 * timedelta(hours=1) + 20 * MINUTE
        [decision] = await Scheduler(
            long, launcher, launcher.hub, watching_since=restarted
        ).fire_due(restarted)
        assert (decision.outcome, decision.catch_up) == (SlotOutcome.FIRED, True)
        assert decision.missed_before == 2
        assert [run.scheduled_for for run in await scheduled_runs(task)] == [T0 + 2 * 60 * MINUTE]
    finally:
        await close_database(database)


async def test_a_slot_due_just_before_start_is_a_catch_up(
    settings: Settings, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(new_scheduler(settings, launcher))
    started = T0 + timedelta(seconds=3)
    [decision] = await new_scheduler(settings, launcher, watching_since=started).fire_due(started)
    assert (decision.outcome, decision.catch_up, decision.missed_before) == (
        SlotOutcome.FIRED,
        True,
        0,
    )
    assert (await scheduled_runs(task))[0].catch_up is True


# exactly once ---------------------------------------------------------------------------------


async def test_fire_due_twice_for_the_same_instant_fires_once(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler)
    await scheduler.fire_due(T0)
    assert await scheduler.fire_due(T0) == []
    assert len(await scheduled_runs(task)) == 1
    assert len(launcher.launched) == 1


async def test_a_crash_between_recording_and_starting_neither_doubles_nor_loses(
    settings: Settings, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(new_scheduler(settings, launcher))
    launcher.crash = True
    with pytest.raises(Crash):
        await new_scheduler(settings, launcher).fire_due(T0)
    # Recorded, not started, and the schedule was not advanced before the crash.
    [run] = await scheduled_runs(task)
    assert run.status is RunStatus.QUEUED
    assert (await schedule_of(task)).next_run_at == T0

    launcher.crash = False
    restarted = Scheduler(
        settings, launcher, launcher.hub, watching_since=T0 + timedelta(seconds=5)
    )
    assert await restarted.fire_due(T0 + timedelta(seconds=5)) == []
    assert [r.id for r in await scheduled_runs(task)] == [run.id]
    assert launcher.launched == []  # RunManager.reconcile() starts queued runs at start-up
    assert (await schedule_of(task)).next_run_at == T0 + MINUTE


async def test_the_slot_and_its_run_commit_together_or_not_at_all(
    scheduler: Scheduler, clock: Clock
) -> None:
    task = await scheduled_task(scheduler)
    # Two schedulers plan the same slot (each with its own run id); the first one records it.
    first, second = await scheduler.plan(T0), await scheduler.plan(T0)
    [batch] = first.settle(set(), set(), T0)
    await record_batch(batch)
    # The second is refused by the constraint, and its run goes with it.
    [late] = second.settle(set(), set(), T0)
    assert late.decisions[0].run_id != batch.decisions[0].run_id
    with pytest.raises(IntegrityError):
        await record_batch(late)
    assert [run.id for run in await scheduled_runs(task)] == [batch.decisions[0].run_id]
    assert len(await slots_of(task)) == 1


async def test_concurrent_steps_in_one_process_fire_each_slot_once(
    settings: Settings, launcher: RecordingLauncher, clock: Clock
) -> None:
    tasks = [await scheduled_task(new_scheduler(settings, launcher)) for _ in range(20)]
    first, second = (
        new_scheduler(settings, launcher),
        new_scheduler(settings, launcher),
    )
    await asyncio.gather(first.fire_due(T0), second.fire_due(T0), first.fire_due(T0))
    for task in tasks:
        assert len(await scheduled_runs(task)) == 1
    assert len(launcher.launched) == 20


async def test_many_due_schedules_fire_in_one_step(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    for _ in range(600):
        await scheduled_task(scheduler)
    decisions = await scheduler.fire_due(T0)
    assert len(decisions) == len(launcher.launched) == 600
    assert await Run.filter(trigger=Trigger.SCHEDULE).count() == 600
    assert await Schedule.filter(next_run_at=T0 + MINUTE).count() == 600
    last_runs = set(await Task.all().values_list("last_run_id", flat=True))
    assert last_runs == set(launcher.launched)


# plans made ahead of the due second ------------------------------------------------------------


async def test_a_plan_made_ahead_fires_what_the_full_step_would(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    tasks = [await scheduled_task(scheduler) for _ in range(3)]
    plan = await scheduler.plan(T0)  # made at T0 - 30 s, while the loop sleeps
    assert await Run.all().count() == 0  # a plan writes nothing

    decisions = await scheduler.fire_due(T0 + timedelta(milliseconds=2), plan)

    assert {d.task_id for d in decisions} == {t.id for t in tasks}
    assert all(d.outcome is SlotOutcome.FIRED and d.slot_at == T0 for d in decisions)
    assert all(d.decided_at is not None and d.recorded_at is not None for d in decisions)
    for task in tasks:
        [run] = await scheduled_runs(task)
        assert run.id in launcher.launched
        assert (await Task.get(id=task.id)).last_run_id == run.id
        [slot] = await slots_of(task)
        assert (slot.outcome, slot.run_id) == (SlotOutcome.FIRED, run.id)
        assert (await schedule_of(task)).next_run_at == T0 + MINUTE
    assert await scheduler.fire_due(T0 + timedelta(seconds=1), plan) == []


async def test_schedules_changed_after_planning_are_planned_again(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    untouched, paused, moved, removed = [await scheduled_task(scheduler) for _ in range(4)]
    plan = await scheduler.plan(T0)
    await update_schedule(scheduler, paused.id, enabled=False)
    await update_schedule(scheduler, moved.id, cron_expression="30 12 * * *")
    await remove_schedule(scheduler, removed.id)
    added = await scheduled_task(scheduler)  # due at T0 too, but unknown to the plan

    await scheduler.fire_due(T0, plan)

    fired = {run.task_id for run in await launched_runs(launcher)}
    assert fired == {untouched.id, added.id}
    assert await ScheduleSlot.filter(task_id__in=[paused.id, moved.id, removed.id]).count() == 0


async def test_a_task_busy_at_the_due_second_is_skipped_though_planned_idle(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler)
    plan = await scheduler.plan(T0)
    await busy(task)

    [decision] = await scheduler.fire_due(T0, plan)

    assert (decision.outcome, decision.run_id) == (SlotOutcome.SKIPPED, None)
    assert launcher.launched == []
    [slot] = await slots_of(task)
    assert slot.outcome is SlotOutcome.SKIPPED


async def test_a_task_deleted_behind_the_plans_back_does_not_stop_the_others(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    kept = [await scheduled_task(scheduler) for _ in range(3)]
    gone = await scheduled_task(scheduler)
    plan = await scheduler.plan(T0)
    await Task.filter(id=gone.id).delete()  # not through the API, so nobody wakes the scheduler

    decisions = await scheduler.fire_due(T0, plan)

    assert {d.task_id for d in decisions} == {t.id for t in kept}
    assert {run.task_id for run in await launched_runs(launcher)} == {t.id for t in kept}
    assert await Run.filter(task_id=gone.id).count() == 0


async def test_a_plan_is_not_used_long_after_its_instant(
    scheduler: Scheduler, launcher: RecordingLauncher, clock: Clock
) -> None:
    task = await scheduled_task(scheduler, overlap=OverlapPolicy.ALLOW)
    plan = await scheduler.plan(T0)
    late = T0 + 2 * MINUTE + timedelta(seconds=5)

    [decision] = await scheduler.fire_due(late, plan)

    # Decided afresh at `late`: the latest slot, with the one before it passed over.
    assert (decision.slot_at, decision.missed_before) == (T0 + 2 * MINUTE, 2)
    assert [run.scheduled_for for run in await scheduled_runs(task)] == [T0 + 2 * MINUTE]


class PlanCountingScheduler(Scheduler):
    def __init__(self, settings: Settings, launcher: RecordingLauncher) -> None:
        super().__init__(settings, launcher, launcher.hub)
        self.planned_for: list[datetime] = []

    async def plan(self, at: datetime) -> DuePlan:
        self.planned_for.append(at)
        return await super().plan(at)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_the_loop_keeps_its_plan_when_woken_by_an_unrelated_change(
    settings: Settings, launcher: RecordingLauncher
) -> None:
    scheduler = PlanCountingScheduler(settings, launcher)
    await scheduler.open()
    try:
        task, other = await make_task(), await make_task("other")
        await set_schedule(scheduler, task.id, "0 0 1 1 *")
        due = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
        await Schedule.filter(task_id=task.id).update(next_run_at=due)
        scheduler.wake()
        await eventually(lambda: due in scheduler.planned_for)  # planned; sleeps until due
        await set_schedule(scheduler, other.id, "0 0 1 1 *")  # far away: changes nothing due
        await asyncio.wait_for(launcher.event.wait(), 5)
        [run] = await launched_runs(launcher)
        assert (run.task_id, run.scheduled_for) == (task.id, due)
        # Fired from the plan made ahead: no second plan for that instant, none at fire time.
        assert [at for at in scheduler.planned_for if due <= at < due + MINUTE] == [due]
    finally:
        await scheduler.close()


# DST days, through the scheduler ---------------------------------------------------------------


async def fired_over(
    scheduler: Scheduler, task: Task, start: datetime, end: datetime
) -> list[datetime]:
    """Drive fire_due as the loop would (at each due time) and every 5 minutes in between."""
    now = start
    while now < end:
        await scheduler.fire_due(now)
        due = (await schedule_of(task)).next_run_at
        assert due is not None
        now = min(due, now + 5 * MINUTE)
    slots = await slots_of(task)
    assert all(slot.outcome is SlotOutcome.FIRED for slot in slots)
    return [slot.slot_at for slot in slots]


async def test_spring_forward_0230_fires_once_at_0300_local(
    scheduler: Scheduler, clock: Clock
) -> None:
    clock.now = datetime(2024, 3, 9, 12, tzinfo=UTC)
    task = await scheduled_task(
        scheduler, "30 2 * * *", zone="America/New_York", overlap=OverlapPolicy.ALLOW
    )
    day = datetime(2024, 3, 10, 4, tzinfo=UTC)  # local midnight, EST
    fired = await fired_over(scheduler, task, day, day + timedelta(hours=23))
    assert fired == [datetime(2024, 3, 10, 7, 0, tzinfo=UTC)]  # 03:00 EDT


async def test_fall_back_0130_fires_once_not_twice(scheduler: Scheduler, clock: Clock) -> None:
    clock.now = datetime(2024, 11, 2, 12, tzinfo=UTC)
    task = await scheduled_task(
        scheduler, "30 1 * * *", zone="America/New_York", overlap=OverlapPolicy.ALLOW
    )
    day = datetime(2024, 11, 3, 4, tzinfo=UTC)  # local midnight, EDT
    fired = await fired_over(scheduler, task, day, day + timedelta(hours=25))
    assert fired == [datetime(2024, 11, 3, 5, 30, tzinfo=UTC)]  # 01:30 EDT, the first one


# schedules ------------------------------------------------------------------------------------


async def test_schedule_json_shows_five_fire_times_in_its_zone_and_utc(
    scheduler: Scheduler, clock: Clock
) -> None:
    task = await scheduled_task(scheduler, "0 9 * * 1-5", zone="Europe/Paris")
    body = await schedule_json_of(scheduler, task.id)
    assert body is not None
    assert body["timezone"] == "Europe/Paris"
    assert body["overlap"] == "skip" and body["enabled"] is True
    assert body["next_run_times"] == [
        "2024-05-02T09:00:00+02:00",  # it is 11:59:30 in Paris: today's 09:00 has passed
        "2024-05-03T09:00:00+02:00",
        "2024-05-06T09:00:00+02:00",
        "2024-05-07T09:00:00+02:00",
        "2024-05-08T09:00:00+02:00",
    ]
    assert body["next_run_times_utc"][0] == "2024-05-02T07:00:00Z"
    assert body["next_run_at"] == "2024-05-02T07:00:00Z"


async def test_setting_again_replaces_the_one_schedule(scheduler: Scheduler, clock: Clock) -> None:
    task = await scheduled_task(scheduler)
    _, created = await set_schedule(scheduler, task.id, "@daily", "Asia/Tokyo")
    assert created is False
    assert await Schedule.filter(task_id=task.id).count() == 1
    schedule = await schedule_of(task)
    assert (schedule.cron_expression, schedule.timezone) == ("@daily", "Asia/Tokyo")
    assert schedule.next_run_at == datetime(2024, 5, 1, 15, tzinfo=UTC)  # midnight in Tokyo


async def test_default_timezone_comes_from_settings(tmp_path: Path, clock: Clock) -> None:
    paris = load_settings(data_dir=tmp_path / "paris", default_timezone="Europe/Paris")
    database = await open_database(paris)
    try:
        launcher = RecordingLauncher(paris, LogHub())
        task = await make_task()
        schedule, _ = await set_schedule(new_scheduler(paris, launcher), task.id, "@daily")
        assert schedule.timezone == "Europe/Paris"
    finally:
        await close_database(database)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s, t: set_schedule(s, t, "* * *"), BadRequest),
        (lambda s, t: set_schedule(s, t, "* * * * *", "Nowhere/Land"), BadRequest),
        (lambda s, t: set_schedule(s, UUID(int=7), "* * * * *"), NotFound),
        (lambda s, t: update_schedule(s, t, enabled=False), NotFound),
    ],
)
async def test_bad_schedule_changes(
    scheduler: Scheduler, clock: Clock, call: Callable[..., object], error: type[Exception]
) -> None:
    task = await make_task()
    with pytest.raises(error):
        await call(scheduler, task.id)  # type: ignore[misc]


async def test_a_task_without_its_script_cannot_be_scheduled(
    scheduler: Scheduler, clock: Clock
) -> None:
    task = await make_task(kept=False)
    with pytest.raises(Conflict) as raised:
        await set_schedule(scheduler, task.id, "* * * * *")
    assert raised.value.code == "script_not_kept"


# the loop -------------------------------------------------------------------------------------


async def test_the_loop_sleeps_until_due_and_wakes_on_change(
    settings: Settings, launcher: RecordingLauncher
) -> None:
    scheduler = new_scheduler(settings, launcher)
    await scheduler.open()
    try:
        task = await make_task()
        await set_schedule(scheduler, task.id, "0 0 1 1 *")  # far away: the loop sleeps
        due = datetime.now(UTC) + timedelta(milliseconds=400)
        await Schedule.filter(task_id=task.id).update(next_run_at=due)
        scheduler.wake()
        await asyncio.wait_for(launcher.event.wait(), 5)
        lag = datetime.now(UTC) - due
        assert timedelta(0) <= lag < timedelta(seconds=1)
        [run] = await launched_runs(launcher)
        assert run.scheduled_for == due
    finally:
        await scheduler.close()
