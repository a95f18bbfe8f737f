"""Pure cron maths: validate 5-field expressions, list fire times in a time zone, in UTC.

Fire times are computed on the zone's wall clock and then placed on the UTC time line:
- a wall time that does not exist (the spring-forward gap) fires once, at the end of the gap
  (a 02:30 daily schedule fires at 03:00 local that day), as cron does;
- a wall time that happens twice (the fall-back hour) fires once, at its first occurrence,
  unless the schedule fires every hour (hour field `*`): those keep firing by the real clock
  through the repeated hour, so `*/15 * * * *` never stops for an hour.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, CroniterError, croniter

from taskdash.core.errors import BadRequest

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
)
MAX_EXPRESSION_CHARS = 200
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
# Walking more slots than this to find the latest missed one jumps ahead instead.
WALK_LIMIT = 10_000


@dataclass(frozen=True)
class CronSpec:
    expression: str
    fields: str
    every_hour: bool


@dataclass(frozen=True)
class DueSlots:
    """The most recent due slot, how many due slots before it were passed over, the next one."""

    latest: datetime
    passed_over: int
    next_after: datetime


def invalid_cron(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_cron")


def parse_cron(text: str) -> CronSpec:
    """Validate a 5-field cron expression or macro; the error says which part is wrong."""
    expression = " ".join(text.split())
    if not expression:
        raise invalid_cron("the cron expression is empty: use 5 fields such as '*/15 * * * *'")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise invalid_cron(f"the cron expression is longer than {MAX_EXPRESSION_CHARS} characters")
    fields = expand_macro(expression)
    parts = fields.split(" ")
    if len(parts) != len(FIELDS):
        raise invalid_cron(
            f"{expression!r} has {len(parts)} field(s); cron needs 5: "
            "minute hour day-of-month month day-of-week (e.g. '0 6 * * 1-5')"
        )
    for index, part in enumerate(parts):
        check_field(index, part)
    check_fires(expression, fields)
    return CronSpec(expression=expression, fields=fields, every_hour=fires_every_hour(fields))


def expand_macro(expression: str) -> str:
    if not expression.startswith("@"):
        return expression
    fields = MACROS.get(expression.lower())
    if fields is None:
        known = ", ".join(MACROS)
        raise invalid_cron(f"unknown macro {expression!r}: use one of {known}")
    return fields


def check_field(index: int, part: str) -> None:
    probe = ["*"] * len(FIELDS)
    probe[index] = part
    name, allowed = FIELDS[index]
    try:
        croniter(" ".join(probe), datetime(2000, 1, 1))
    except CroniterError:
        raise invalid_cron(
            f"the {name} field {part!r} is not valid: use numbers in {allowed}, "
            "with '*', ',', '-' and '/' (e.g. '*/5', '1-5', '0,30')"
        ) from None


def check_fires(expression: str, fields: str) -> None:
    try:
        croniter(fields, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise invalid_cron(f"{expression!r} never fires (no such date, e.g. 30 February)") from None
    except CroniterError as exc:
        raise invalid_cron(f"{expression!r} is not a valid cron expression: {exc}") from None


def fires_every_hour(fields: str) -> bool:
    hours = croniter.expand(fields)[0][1]
    return hours == ["*"] or len(hours) == 24


@cache
def known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_ZONES


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA time zone such as 'Europe/Paris' or 'UTC'."""
    cleaned = name.strip()
    if cleaned not in known_zones():
        raise BadRequest(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'",
            code="invalid_timezone",
        )
    try:
        return ZoneInfo(cleaned)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"unknown time zone {name!r}", code="invalid_timezone") from None


# wall clock -> UTC ----------------------------------------------------------------------------


def to_utc(wall: datetime, zone: ZoneInfo, fold: int = 0) -> datetime:
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def exists(wall: datetime, zone: ZoneInfo) -> bool:
    return to_utc(wall, zone).astimezone(zone).replace(tzinfo=None) == wall


def gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the spring-forward gap that swallowed `wall`."""
    low, high = to_utc(wall, zone, fold=1), to_utc(wall, zone, fold=0)
    low, high = min(low, high), max(low, high)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def repeated_by(wall: datetime, zone: ZoneInfo) -> timedelta:
    """How much earlier the second occurrence of an ambiguous wall time is (zero otherwise)."""
    first, second = to_utc(wall, zone, 0), to_utc(wall, zone, 1)
    return max(second - first, timedelta(0))


def instants_of(wall: datetime, zone: ZoneInfo, every_hour: bool) -> list[datetime]:
    """The UTC instants at which one wall-clock fire time fires; the first is the earliest."""
    if not exists(wall, zone):
        return [gap_end(wall, zone)]
    first = to_utc(wall, zone, 0)
    if every_hour and repeated_by(wall, zone):
        return [first, to_utc(wall, zone, 1)]
    return [first]


# fire times -----------------------------------------------------------------------------------


def fire_times(spec: CronSpec, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after `after`, in UTC, increasing, each once."""
    after = after.astimezone(UTC)
    start = after.astimezone(zone).replace(tzinfo=None)
    start -= repeated_by(start, zone)
    walls = croniter(spec.fields, start)
    pending: list[datetime] = []
    last: datetime | None = None
    while True:
        instants = instants_of(walls.get_next(datetime), zone, spec.every_hour)
        # Later wall times never map before this one's first instant, so what is not later
        # than it is final and can be given out in order.
        while pending and pending[0] <= instants[0]:
            instant = heapq.heappop(pending)
            if instant > after and instant != last:
                last = instant
                yield instant
        for instant in instants:
            heapq.heappush(pending, instant)


def next_fire_times(spec: CronSpec, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    times = fire_times(spec, zone, after)
    return [next(times) for _ in range(count)]


def next_fire_time(spec: CronSpec, zone: ZoneInfo, after: datetime) -> datetime:
    return next(fire_times(spec, zone, after))


def due_slots(
    spec: CronSpec, zone: ZoneInfo, first_due: datetime, now: datetime, horizon: timedelta
) -> DueSlots:
    """Walk from the first due slot (not after `now`) to the latest one.

    Past WALK_LIMIT slots the walk jumps to `now - horizon` (slots older than that are
    not fired anyway), so `passed_over` is then a lower bound.
    """
    latest, passed = first_due, 0
    times = fire_times(spec, zone, first_due)
    for instant in times:
        if instant > now:
            return DueSlots(latest, passed, instant)
        latest, passed = instant, passed + 1
        if passed >= WALK_LIMIT and instant < now - horizon:
            times = fire_times(spec, zone, now - horizon)
            return jump_walk(times, latest, passed, now)
    raise AssertionError("fire_times never ends")


def jump_walk(times: Iterator[datetime], latest: datetime, passed: int, now: datetime) -> DueSlots:
    for instant in times:
        if instant > now:
            return DueSlots(latest, passed, instant)
        latest, passed = instant, passed + 1
    raise AssertionError("fire_times never ends")
