"""JSON routes of a task's schedule: /task/<task_id>/schedule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field
from quart import Blueprint, Response, jsonify, request
from quart_schema import DataSource, document_request, document_response

from taskdash.core.errors import BadRequest, ServiceUnavailable, UnsupportedMediaType
from taskdash.core.models import OverlapPolicy
from taskdash.operations.tasks import get_task
from taskdash.scheduling.scheduler import ScheduleOut, Scheduler
from taskdash.services import services
from taskdash.web.forms import parse_bool, parse_uuid
from taskdash.web.schemas import ErrorOut, MessageOut

schedules = Blueprint("schedules", __name__)

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
KEYS = ("cron_expression", "timezone", "enabled", "overlap")


class ScheduleIn(BaseModel):
    """Form fields (multipart or urlencoded) or a JSON object with the same keys."""

    cron_expression: str = Field(description="5 cron fields or a macro such as @daily")
    timezone: str | None = Field(None, description="IANA zone, e.g. Europe/Paris (default UTC)")
    enabled: bool = Field(True, description="false pauses the schedule without deleting it")
    overlap: OverlapPolicy = Field(
        OverlapPolicy.SKIP, description="when a run is still active: skip, queue or allow"
    )


class ScheduleChangeIn(BaseModel):
    """PATCH: any of the keys; the others keep their values."""

    cron_expression: str | None = None
    timezone: str | None = None
    enabled: bool | None = None
    overlap: OverlapPolicy | None = None


@dataclass(frozen=True)
class ScheduleChange:
    cron_expression: str | None = None
    timezone: str | None = None
    enabled: bool | None = None
    overlap: OverlapPolicy | None = None


def scheduler() -> Scheduler:
    found = services().scheduler
    if found is None:
        raise ServiceUnavailable("the scheduler is not running on this server")
    return found


async def read_body() -> dict[str, Any]:
    """The request's fields, from a form or a JSON object; an empty body is no fields."""
    if request.mimetype == "application/json":
        data = await request.get_json(silent=True)
        if not isinstance(data, dict):
            raise BadRequest('the JSON body must be an object such as {"cron_expression": ...}')
        return data
    if request.mimetype in FORM_TYPES:
        return dict((await request.form).items())
    if not await request.get_data():
        return {}
    raise UnsupportedMediaType(
        f"send the schedule as form data or JSON (got {request.mimetype or 'no content type'})"
    )


def text_value(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string, not {type(value).__name__}")
    return value.strip() or None


def bool_value(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be true or false, not {value!r}")
    return None if not value.strip() else parse_bool(value, key, default=True)


def overlap_value(data: Mapping[str, Any]) -> OverlapPolicy | None:
    value = text_value(data, "overlap")
    if value is None:
        return None
    try:
        return OverlapPolicy(value.lower())
    except ValueError:
        choices = ", ".join(policy.value for policy in OverlapPolicy)
        raise BadRequest(f"'overlap' must be one of {choices}, not {value!r}") from None


def parse_change(data: Mapping[str, Any]) -> ScheduleChange:
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise BadRequest(
            f"unexpected field(s): {', '.join(unknown)}; expected {', '.join(KEYS)}",
            code="unexpected_field",
        )
    return ScheduleChange(
        cron_expression=text_value(data, "cron_expression"),
        timezone=text_value(data, "timezone"),
        enabled=bool_value(data, "enabled"),
        overlap=overlap_value(data),
    )


async def schedule_response(task_id: UUID, status: int = 200) -> Response:
    body = await scheduler().schedule_json_for(task_id)
    response = jsonify(body)
    response.status_code = status
    return response


@schedules.post("/task/<task_id>/schedule")
@document_request(ScheduleIn, source=DataSource.JSON)
@document_response(ScheduleOut, 201)
@document_response(ScheduleOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 409)
async def set_schedule(task_id: str) -> Response:
    """Set (or replace) the task's cron schedule; answers it with its next five fire times."""
    task = parse_uuid(task_id)
    change = parse_change(await read_body())
    if change.cron_expression is None:
        raise BadRequest(
            "field 'cron_expression' is required, e.g. '*/15 * * * *' or '@daily'",
            code="missing_cron",
        )
    _, created = await scheduler().set_schedule(
        task,
        change.cron_expression,
        change.timezone,
        enabled=True if change.enabled is None else change.enabled,
        overlap=change.overlap or OverlapPolicy.SKIP,
    )
    return await schedule_response(task, 201 if created else 200)


@schedules.patch("/task/<task_id>/schedule")
@document_request(ScheduleChangeIn, source=DataSource.JSON)
@document_response(ScheduleOut)
@document_response(ErrorOut, 404)
async def change_schedule(task_id: str) -> Response:
    """Change some of the schedule's settings; `enabled=false` pauses it, `true` resumes it."""
    task = (await get_task(parse_uuid(task_id))).id
    change = parse_change(await read_body())
    if change == ScheduleChange():
        raise BadRequest(f"nothing to change: send one of {', '.join(KEYS)}")
    await scheduler().update_schedule(
        task,
        cron_expression=change.cron_expression,
        timezone=change.timezone,
        enabled=change.enabled,
        overlap=change.overlap,
    )
    return await schedule_response(task)


@schedules.get("/task/<task_id>/schedule")
@document_response(ScheduleOut)
@document_response(ErrorOut, 404)
async def show_schedule(task_id: str) -> Response:
    """The task's schedule, its next five fire times and its latest decided slots."""
    task = (await get_task(parse_uuid(task_id))).id
    await scheduler().get_schedule(task)
    return await schedule_response(task)


@schedules.delete("/task/<task_id>/schedule")
@document_response(MessageOut)
@document_response(ErrorOut, 404)
async def delete_schedule(task_id: str) -> Response:
    """Remove the task's schedule (its runs and recorded slots stay)."""
    task = (await get_task(parse_uuid(task_id))).id
    await scheduler().remove_schedule(task)
    return jsonify(MessageOut(message="Schedule removed", task_id=task).model_dump(mode="json"))
