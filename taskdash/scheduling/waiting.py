"""The `queue` overlap policy: a slot that found its task busy waits, then starts when the
task's active run ends (at most one waits per task)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from tortoise.transactions import in_transaction

from taskdash.core.config import Settings
from taskdash.core.models import ActorKind, Run, ScheduleSlot, SlotOutcome, Task, Trigger
from taskdash.scheduling.decide import Decision
from taskdash.scheduling.record import active_task_ids

STARTED_AFTER = "started after the active run"


class SlotTaken(Exception):
    """Someone else started this waiting slot first; roll the transaction back."""


class WaitingSlots:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # False once a look found none; set again when a step records a waiting slot.
        self.maybe_some = True

    async def release(self, now: datetime) -> list[Decision]:
        """Record a run for the waiting slot of each task whose active run has ended; the
        caller starts the runs."""
        if not self.maybe_some:
            return []
        slots = await ScheduleSlot.filter(outcome=SlotOutcome.WAITING).order_by("slot_at")
        self.maybe_some = bool(slots)
        busy = await active_task_ids([UUID(str(slot.task_id)) for slot in slots])
        released = []
        for slot in slots:
            task_id = UUID(str(slot.task_id))
            if task_id in busy:
                continue
            busy.add(task_id)
            run = await self._start(slot, task_id, now)
            if run is not None:
                released.append(released_decision(slot, task_id, run))
        return released

    async def _start(self, slot: ScheduleSlot, task_id: UUID, now: datetime) -> Run | None:
        task = await Task.get_or_none(id=task_id).only("id", "image", "script_type")
        if task is None:
            return None
        try:
            async with in_transaction():
                run = await Run.create(
                    task_id=task_id,
                    trigger=Trigger.SCHEDULE,
                    image=self.settings.image_for(task.script_type, task.image),
                    scheduled_for=slot.slot_at,
                    catch_up=slot.catch_up,
                    started_by_kind=ActorKind.SCHEDULE,
                )
                taken = await ScheduleSlot.filter(id=slot.id, outcome=SlotOutcome.WAITING).update(
                    outcome=SlotOutcome.FIRED, run_id=run.id, reason=STARTED_AFTER
                )
                if not taken:
                    raise SlotTaken
                await Task.filter(id=task_id).update(last_run_id=run.id, updated_at=now)
        except SlotTaken:
            return None
        return run


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
        reason=STARTED_AFTER,
        next_run_at=slot.slot_at,
        due_at=slot.slot_at,
        run_id=run.id,
    )
