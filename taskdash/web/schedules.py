"""JSON routes of a task's schedule: /task/<task_id>/schedule."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import DataSource, document_request, document_response

from taskdash.core.models import Role
from taskdash.operations.schedules import (
    change_schedule,
    remove_schedule,
    set_schedule,
    show_schedule,
)
from taskdash.web.auth import allow
from taskdash.web.context import services
from taskdash.web.forms import parse_schedule_change, parse_uuid, read_fields
from taskdash.web.responses import json_response
from taskdash.web.schemas import ErrorOut, MessageOut, ScheduleChangeIn, ScheduleIn, ScheduleOut

schedules = Blueprint("schedules", __name__)


@schedules.post("/task/<task_id>/schedule")
@allow(Role.OPERATOR)
@document_request(ScheduleIn, source=DataSource.JSON)
@document_response(ScheduleOut, 201)
@document_response(ScheduleOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 409)
@document_response(ErrorOut, 415)
async def set_task_schedule(task_id: str) -> Response:
    """Set the task's cron schedule (fields left out keep their value); answers it with its
    next five fire times."""
    task = parse_uuid(task_id)
    change = parse_schedule_change(await read_fields())
    view, created = await set_schedule(services(), task, change)
    return json_response(ScheduleOut.of(view), 201 if created else 200)


@schedules.patch("/task/<task_id>/schedule")
@allow(Role.OPERATOR)
@document_request(ScheduleChangeIn, source=DataSource.JSON)
@document_response(ScheduleOut)
@document_response(ErrorOut, 404)
@document_response(ErrorOut, 415)
async def change_task_schedule(task_id: str) -> Response:
    """Change some of the schedule's settings; `enabled=false` pauses it, `true` resumes it."""
    task = parse_uuid(task_id)
    change = parse_schedule_change(await read_fields())
    return json_response(ScheduleOut.of(await change_schedule(services(), task, change)))


@schedules.get("/task/<task_id>/schedule")
@allow(Role.VIEWER)
@document_response(ScheduleOut)
@document_response(ErrorOut, 404)
async def show_task_schedule(task_id: str) -> Response:
    """The task's schedule, its next five fire times and its latest decided slots."""
    return json_response(ScheduleOut.of(await show_schedule(services(), parse_uuid(task_id))))


@schedules.delete("/task/<task_id>/schedule")
@allow(Role.OPERATOR)
@document_response(MessageOut)
@document_response(ErrorOut, 404)
async def delete_task_schedule(task_id: str) -> Response:
    """Remove the task's schedule (its runs and recorded slots stay)."""
    task = parse_uuid(task_id)
    await remove_schedule(services(), task)
    return json_response(MessageOut(message="Schedule removed", task_id=task))
