"""JSON routes of a task's schedule: /task/<task_id>/schedule."""

from __future__ import annotations

from quart import Blueprint

schedules = Blueprint("schedules", __name__)
