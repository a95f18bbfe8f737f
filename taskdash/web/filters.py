"""Jinja filters: how the dashboard writes times and durations."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from quart import Quart

from taskdash.core.models import ActorKind, Run


def format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_short_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%b %d, %H:%M:%S")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def format_fire_time(value: str | None, zone: str) -> str:
    """A schedule's time (ISO text from its JSON) on its own zone's clock, e.g. Mon 09:00 CET."""
    if not value:
        return ""
    when = datetime.fromisoformat(value).astimezone(ZoneInfo(zone))
    return when.strftime("%a %Y-%m-%d %H:%M %Z")


def format_iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def started_by(run: Run) -> str:
    """Who started a run, in words."""
    kind, name = run.started_by_kind, run.started_by_name
    if kind is ActorKind.SCHEDULE:
        return "its schedule"
    if kind is ActorKind.TOKEN:
        return f"token {name}"
    return name or kind.value


def register_filters(app: Quart) -> None:
    app.add_template_global(started_by, "started_by")
    app.add_template_filter(format_time, "when")
    app.add_template_filter(format_short_time, "short_when")
    app.add_template_filter(format_duration, "duration")
    app.add_template_filter(format_fire_time, "fire_time")
    app.add_template_filter(format_iso, "iso")
