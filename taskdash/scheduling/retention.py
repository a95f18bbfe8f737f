"""Pruning of old schedule slot records (the runs they fired are kept with their task)."""

from __future__ import annotations

from datetime import datetime, timedelta

from taskdash.core.models import ScheduleSlot, SlotOutcome

SLOT_RETENTION = timedelta(days=30)
PRUNE_EVERY = timedelta(hours=1)


class SlotPruner:
    def __init__(self) -> None:
        self._pruned_at: datetime | None = None

    async def prune_if_due(self, now: datetime) -> None:
        """Delete decided slots older than SLOT_RETENTION, at most once per PRUNE_EVERY;
        waiting slots are kept whatever their age."""
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        await ScheduleSlot.filter(
            recorded_at__lt=now - SLOT_RETENTION, outcome__not=SlotOutcome.WAITING
        ).delete()
