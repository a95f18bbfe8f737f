"""Pure cron helpers: validation messages, fire times in zones, DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from taskdash.core.errors import BadRequest
from taskdash.scheduling.cron import (
    due_slots,
    fire_times,
    next_fire_time,
    next_fire_times,
    parse_cron,
    parse_timezone,
)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(times: list[datetime], zone: str) -> list[str]:
    return [t.astimezone(parse_timezone(zone)).strftime("%Y-%m-%d %H:%M%z") for t in times]


@pytest.mark.parametrize(
    ("expression", "fields"),
    [
        ("* * * * *", "* * * * *"),
        ("  */15   *  * * * ", "*/15 * * * *"),
        ("0 6 * * 1-5", "0 6 * * 1-5"),
        ("0 0 1 jan *", "0 0 1 jan *"),
        ("30 4 * * sun", "30 4 * * sun"),
        ("0 0 29 2 *", "0 0 29 2 *"),
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_valid_expressions(expression: str, fields: str) -> None:
    assert parse_cron(expression).fields == fields


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("* * * *", "has 4 field(s); cron needs 5"),
        ("* * * * * *", "has 6 field(s)"),
        ("0 0 1 1 * 2030", "has 6 field(s)"),
        ("61 * * * *", "minute field '61'"),
        ("* 24 * * *", "hour field '24'"),
        ("* * 0 * *", "day-of-month field '0'"),
        ("* * 32 * *", "day-of-month field '32'"),
        ("* * * 13 *", "month field '13'"),
        ("* * * * 8", "day-of-week field '8'"),
        ("*/0 * * * *", "minute field '*/0'"),
        ("1-70 * * * *", "minute field '1-70'"),
        ("H * * * *", "minute field 'H'"),
        ("a b c d e", "minute field 'a'"),
        ("@reboot", "unknown macro '@reboot'"),
        ("@every 5m", "unknown macro"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4 *", "never fires"),
        ("* " * 120, "longer than 200"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression: str, says: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_cron(expression)
    assert raised.value.code == "invalid_cron"
    assert says in raised.value.message


@pytest.mark.parametrize("name", ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
def test_known_zones(name: str) -> None:
    assert parse_timezone(name).key == name


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "utc+2", "../etc/passwd", "localtime"])
def test_unknown_zones(name: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_timezone(name)
    assert raised.value.code == "invalid_timezone"


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        ("*/15 * * * *", "UTC", utc(2024, 5, 1, 10, 7), ["10:15", "10:30", "10:45"]),
        ("0 9 * * *", "Europe/Paris", utc(2024, 7, 1, 12), ["07-02 07:00Z"]),
        ("0 9 * * *", "Europe/Paris", utc(2024, 1, 1, 12), ["01-02 08:00Z"]),
        ("0 9 * * *", "Asia/Kolkata", utc(2024, 1, 1, 12), ["01-02 03:30Z"]),
        ("0 0 * * 1-5", "UTC", utc(2024, 5, 3, 12), ["05-06 00:00Z"]),  # Friday -> Monday
        ("0 0 29 2 *", "UTC", utc(2024, 3, 1), ["2028-02-29"]),
    ],
)
def test_fire_times_in_zones(
    expression: str, zone: str, after: datetime, expected: list[str]
) -> None:
    times = next_fire_times(parse_cron(expression), parse_timezone(zone), after, len(expected))
    formats = {5: "%H:%M", 12: "%m-%d %H:%MZ", 10: "%Y-%m-%d"}
    assert [t.strftime(formats[len(e)]) for t, e in zip(times, expected, strict=True)] == expected
    assert all(t.tzinfo is UTC for t in times)


def test_fire_times_are_strictly_after() -> None:
    spec = parse_cron("* * * * *")
    assert next_fire_time(spec, parse_timezone("UTC"), utc(2024, 1, 1, 0, 0)) == utc(
        2024, 1, 1, 0, 1
    )


# DST: America/New_York springs forward 2024-03-10 02:00 -> 03:00, falls back 2024-11-03
# 02:00 -> 01:00; Europe/Paris springs forward 2024-03-31 02:00 -> 03:00.


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        (
            "America/New_York",
            utc(2024, 3, 9, 12),
            ["2024-03-10 03:00-0400", "2024-03-11 02:30-0400", "2024-03-12 02:30-0400"],
        ),
        (
            "Europe/Paris",
            utc(2024, 3, 30, 12),
            ["2024-03-31 03:00+0200", "2024-04-01 02:30+0200", "2024-04-02 02:30+0200"],
        ),
    ],
)
def test_spring_forward_0230_fires_once_at_the_end_of_the_gap(
    zone: str, after: datetime, expected: list[str]
) -> None:
    times = next_fire_times(parse_cron("30 2 * * *"), parse_timezone(zone), after, 3)
    assert local(times, zone) == expected


def test_fall_back_0130_fires_once_at_its_first_occurrence() -> None:
    zone = "America/New_York"
    times = next_fire_times(parse_cron("30 1 * * *"), parse_timezone(zone), utc(2024, 11, 2, 12), 3)
    assert local(times, zone) == [
        "2024-11-03 01:30-0400",
        "2024-11-04 01:30-0500",
        "2024-11-05 01:30-0500",
    ]


def test_fall_back_every_hour_schedules_keep_the_real_clock() -> None:
    zone = "America/New_York"
    times = next_fire_times(
        parse_cron("*/30 * * * *"), parse_timezone(zone), utc(2024, 11, 3, 4, 50), 6
    )
    assert local(times, zone) == [
        "2024-11-03 01:00-0400",
        "2024-11-03 01:30-0400",
        "2024-11-03 01:00-0500",
        "2024-11-03 01:30-0500",
        "2024-11-03 02:00-0500",
        "2024-11-03 02:30-0500",
    ]
    assert all(b - a == timedelta(minutes=30) for a, b in pairwise(times))


def test_fall_back_start_inside_the_repeated_hour() -> None:
    zone = "America/New_York"
    # 01:50 EDT, first pass: 01:00 EST and 01:30 EST are still to come.
    times = next_fire_times(
        parse_cron("*/30 * * * *"), parse_timezone(zone), utc(2024, 11, 3, 5, 50), 3
    )
    assert local(times, zone) == [
        "2024-11-03 01:00-0500",
        "2024-11-03 01:30-0500",
        "2024-11-03 02:00-0500",
    ]


def test_spring_forward_gap_slots_collapse_into_one() -> None:
    zone = "America/New_York"
    times = next_fire_times(
        parse_cron("0,30 2,3 * * *"), parse_timezone(zone), utc(2024, 3, 10, 5), 3
    )
    assert local(times, zone) == [
        "2024-03-10 03:00-0400",
        "2024-03-10 03:30-0400",
        "2024-03-11 02:00-0400",
    ]


def test_fire_times_never_repeat_or_go_back_across_a_year_of_dst() -> None:
    spec, zone = parse_cron("*/20 * * * *"), parse_timezone("Europe/London")
    times = fire_times(spec, zone, utc(2024, 1, 1))
    previous = next(times)
    for _ in range(3 * 24 * 366):
        current = next(times)
        assert current - previous == timedelta(minutes=20)
        previous = current


@pytest.mark.parametrize(
    ("expression", "first_due", "now", "latest", "passed_over", "next_after"),
    [
        ("* * * * *", utc(2024, 1, 1, 10), utc(2024, 1, 1, 10, 0, 0), "10:00", 0, "10:01"),
        ("* * * * *", utc(2024, 1, 1, 10), utc(2024, 1, 1, 10, 0, 59), "10:00", 0, "10:01"),
        ("* * * * *", utc(2024, 1, 1, 10), utc(2024, 1, 1, 10, 3, 30), "10:03", 3, "10:04"),
        ("0 * * * *", utc(2024, 1, 1, 10), utc(2024, 1, 1, 15, 10), "15:00", 5, "16:00"),
    ],
)
def test_due_slots(
    expression: str,
    first_due: datetime,
    now: datetime,
    latest: str,
    passed_over: int,
    next_after: str,
) -> None:
    slots = due_slots(
        parse_cron(expression), parse_timezone("UTC"), first_due, now, timedelta(days=1)
    )
    assert slots.latest.strftime("%H:%M") == latest
    assert slots.passed_over == passed_over
    assert slots.next_after.strftime("%H:%M") == next_after


def test_due_slots_after_a_long_outage_jumps_instead_of_walking_every_slot() -> None:
    slots = due_slots(
        parse_cron("* * * * *"),
        parse_timezone("UTC"),
        utc(2023, 1, 1),
        utc(2024, 1, 1, 12, 0, 30),
        timedelta(hours=1),
    )
    assert slots.latest == utc(2024, 1, 1, 12, 0)
    assert slots.next_after == utc(2024, 1, 1, 12, 1)
    assert slots.passed_over >= 10_000
