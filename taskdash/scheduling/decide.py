"""Pure: what to do with a schedule's due slot (fire, skip, wait or record as missed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from taskdash.core.models import OverlapPolicy, SlotOutcome
from taskdash.scheduling.cron import CronSpec, DueSlots, due_slots, next_fire_time, parse_cron

# A slot decided later than this after it was due counts as a catch-up (the loop was stalled).
LATE_AFTER = timedelta(seconds=60)
# Cron fires on whole minutes, so a slot younger than this is the only one due.
MIN_SLOT_GAP = timedelta(seconds=60)


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
