"""Pydantic shapes of the JSON API: used to build responses and to document them in OpenAPI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar, get_origin
from uuid import UUID

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import BaseConverter, Rule

from taskdash.core.models import (
    ActorKind,
    OverlapPolicy,
    Role,
    Run,
    RunStatus,
    ScheduleSlot,
    ScriptType,
    SlotOutcome,
    Task,
    Trigger,
)
from taskdash.scheduling.schedules import ScheduleView
from taskdash.web.auth import PUBLIC


class ErrorBody(BaseModel):
    code: str
    message: str
    status: int


class ErrorOut(BaseModel):
    error: ErrorBody


class MessageOut(BaseModel):
    message: str
    task_id: UUID


class ActorOut(BaseModel):
    kind: ActorKind = Field(description="user, token, schedule or anonymous")
    name: str


class RunOut(BaseModel):
    run_id: UUID
    task_id: UUID
    status: RunStatus
    trigger: Trigger
    exit_code: int | None
    queued_at: datetime
    # The requirements build, its own phase (null without requirements); the run's clock
    # (started_at, duration_seconds, the timeout) starts with its container, after it.
    build_started_at: datetime | None = None
    build_finished_at: datetime | None = None
    build_seconds: float | None = None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    error: str | None
    image: str
    log_bytes: int
    log_lines: int
    log_truncated: bool
    scheduled_for: datetime | None = None
    catch_up: bool = False
    started_by: ActorOut

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls(
            run_id=run.id,
            task_id=UUID(str(run.task_id)),
            status=run.status,
            trigger=run.trigger,
            exit_code=run.exit_code,
            queued_at=run.queued_at,
            build_started_at=run.build_started_at,
            build_finished_at=run.build_finished_at,
            build_seconds=cls.build_seconds_of(run),
            started_at=run.started_at,
            finished_at=run.finished_at,
            duration_seconds=run.duration_seconds,
            error=run.error,
            image=run.image,
            log_bytes=run.log_bytes,
            log_lines=run.log_lines,
            log_truncated=run.log_truncated,
            scheduled_for=run.scheduled_for,
            catch_up=run.catch_up,
            started_by=ActorOut(kind=run.started_by_kind, name=run.started_by_name),
        )

    @staticmethod
    def build_seconds_of(run: Run) -> float | None:
        if run.build_started_at is None or run.build_finished_at is None:
            return None
        return (run.build_finished_at - run.build_started_at).total_seconds()


class TaskOut(BaseModel):
    task_id: UUID
    name: str
    script_type: ScriptType
    status: RunStatus | None = Field(description="the latest run's status; null before any run")
    created_at: datetime
    updated_at: datetime
    script_kept: bool
    image: str
    has_requirements: bool
    last_run: RunOut | None
    next_run_at: datetime | None = None

    @classmethod
    def of(
        cls,
        task: Task,
        last_run: Run | None,
        image: str,
        next_run_at: datetime | None = None,
    ) -> TaskOut:
        return cls(
            task_id=task.id,
            name=task.name,
            script_type=task.script_type,
            status=last_run.status if last_run else None,
            created_at=task.created_at,
            updated_at=task.updated_at,
            script_kept=task.script_kept,
            image=image,
            has_requirements=bool((task.requirements or "").strip()),
            last_run=RunOut.of(last_run) if last_run else None,
            next_run_at=next_run_at,
        )


class SlotOut(BaseModel):
    slot_at: datetime
    outcome: SlotOutcome
    run_id: UUID | None
    catch_up: bool
    missed_before: int
    reason: str
    recorded_at: datetime

    @classmethod
    def of(cls, slot: ScheduleSlot) -> SlotOut:
        return cls(
            slot_at=slot.slot_at,
            outcome=slot.outcome,
            run_id=slot.run_id,
            catch_up=slot.catch_up,
            missed_before=slot.missed_before,
            reason=slot.reason,
            recorded_at=slot.recorded_at,
        )


class ScheduleOut(BaseModel):
    task_id: UUID
    cron_expression: str
    timezone: str
    enabled: bool
    overlap: OverlapPolicy
    next_run_at: datetime | None
    last_run_at: datetime | None
    next_run_times: list[datetime]
    next_run_times_utc: list[datetime]
    recent_slots: list[SlotOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: ScheduleView) -> ScheduleOut:
        schedule = view.schedule
        return cls(
            task_id=UUID(str(schedule.task_id)),
            cron_expression=schedule.cron_expression,
            timezone=schedule.timezone,
            enabled=schedule.enabled,
            overlap=schedule.overlap,
            next_run_at=schedule.next_run_at,
            last_run_at=schedule.last_run_at,
            next_run_times=[time.astimezone(view.zone) for time in view.upcoming],
            next_run_times_utc=view.upcoming,
            recent_slots=[SlotOut.of(slot) for slot in view.recent_slots],
            created_at=schedule.created_at,
            updated_at=schedule.updated_at,
        )


def schedule_json(view: ScheduleView | None) -> dict[str, Any] | None:
    """The schedule as the API answers it (the dashboard's card renders the same)."""
    return None if view is None else ScheduleOut.of(view).model_dump(mode="json")


class TaskDetailOut(TaskOut):
    script_filename: str
    requirements: str | None
    env: dict[str, str]
    secret_env: dict[str, str] = Field(
        default_factory=dict, description="the secret variables, each value shown as ***"
    )
    timeout_seconds: float
    memory_mb: int
    cpus: float
    schedule: dict[str, Any] | None = None


class TaskCreatedOut(BaseModel):
    message: str
    script_type: ScriptType
    task_id: UUID
    run_id: UUID
    upload: bool


class RunStartedOut(BaseModel):
    message: str
    task_id: UUID
    run_id: UUID
    status: RunStatus


class DockerInfoOut(BaseModel):
    task_id: UUID
    run_id: UUID | None
    source: str = Field(description="live (inspected now), kept (saved at the run's end) or none")
    container: dict[str, Any] | None


class WhoAmIOut(BaseModel):
    kind: ActorKind
    name: str
    role: Role


class LoopLagOut(BaseModel):
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class HealthOut(BaseModel):
    status: str
    database: str
    docker: str
    loop_lag: LoopLagOut = Field(
        description="how late the event loop ran a 50 ms timer, over the last minute"
    )


# A form field is sent or left out, never null: the document says so (no `null` branch).
Absent = SkipJsonSchema[None]


class TaskCreateForm(BaseModel):
    """multipart/form-data fields of POST /task/py and /task/sh."""

    file: str = Field(
        description="the script file (or send its text in `script`)",
        json_schema_extra={"format": "binary"},
    )
    script: str | Absent = Field(None, description="the script's text, when no `file` is sent")
    requirements: str | Absent = Field(None, description="requirements.txt (python only)")
    upload: bool = Field(
        True,
        description="keep the script (true) or stream it once (false); 1/0, yes/no and on/off "
        "are read too",
    )
    name: Annotated[str, Field(max_length=200)] | Absent = None
    image: Annotated[str, Field(max_length=255)] | Absent = None
    timeout_seconds: Annotated[float, Field(ge=1, le=7 * 24 * 3600)] | Absent = Field(
        None, description="at most TASKDASH_MAX_RUN_TIMEOUT_SECONDS"
    )
    memory_mb: Annotated[int, Field(ge=6, le=1024 * 1024)] | Absent = Field(
        None, description="at most TASKDASH_MAX_RUN_MEMORY_MB"
    )
    cpus: Annotated[float, Field(ge=0.01, le=256)] | Absent = Field(
        None, description="at most TASKDASH_MAX_RUN_CPUS"
    )
    env: str | Absent = Field(
        None, description='a JSON object, e.g. {"GREETING": "hi"}, or NAME=value lines'
    )
    secret_env: str | Absent = Field(
        None,
        description="like env, but the values are stored encrypted, masked as *** in logs, "
        "and never shown again",
    )


class ScheduleIn(BaseModel):
    """Form fields (multipart or urlencoded) or a JSON object with the same keys. A field left
    out keeps its current value; a new schedule takes the defaults shown."""

    cron_expression: str = Field(
        description="5 cron fields or a macro such as @daily", examples=["*/15 * * * 1-5"]
    )
    timezone: str | None = Field(
        None, description="IANA zone, e.g. Europe/Paris (default UTC)", examples=["Europe/Paris"]
    )
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


class Pagination(BaseModel):
    limit: Annotated[int, Field(ge=1, le=1000)] | Absent = None
    offset: Annotated[int, Field(ge=0, le=10**12)] | Absent = None


class LogQuery(BaseModel):
    run_id: UUID | Absent = Field(None, description="another run than the latest")


# the OpenAPI document ---------------------------------------------------------------------

TEXT_ATTRIBUTE = "_taskdash_text_responses"
DASHBOARD_BLUEPRINTS = {"pages", "account"}
ROUTE_ERRORS = {
    400: "a malformed id in the path, or a parameter it names is wrong",
    401: "no valid credentials: send `Authorization: Bearer <token>` or log in",
    403: "the credentials' role is too low, or a cross-site or CSRF-less write",
    404: "no such task, run or schedule",
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"},
    "session": {"type": "apiKey", "in": "cookie", "name": "taskdash_session"},
}
DASHBOARD_RESPONSE = {
    "description": "the dashboard: an HTML page, an htmx fragment or a redirect",
    "content": {"text/html": {}, "text/plain": {}},
}
View = TypeVar("View", bound=Callable[..., Any])


def document_text(media_type: str, description: str, status: int = 200) -> Callable[[View], View]:
    """Document a response whose body is text of `media_type`, not JSON."""

    def mark(view: View) -> View:
        texts = dict(getattr(view, TEXT_ATTRIBUTE, {}))
        texts[status] = {"description": description, "content": {media_type: {}}}
        setattr(view, TEXT_ATTRIBUTE, texts)
        return view

    return mark


class ApiDocument(OpenAPIProvider):
    """quart-schema's document, completed with what every route answers beyond its declared
    bodies: ids in paths are UUIDs; a route that needs a role can answer 401 and 403, one with
    an id 400 (malformed) and 404; text bodies (`document_text`); the dashboard's routes answer
    HTML (a page, an htmx fragment or a redirect) and are no API."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
        return document

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if name.endswith("_id"):
            parameter["schema"] = {"type": "string", "format": "uuid"}
        return parameter

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        error, error_components = self.build_response_object(ErrorOut, None)
        components.update(error_components)
        view = self._app.view_functions[rule.endpoint]
        guarded = getattr(view, "required_role", PUBLIC) != PUBLIC
        # The dashboard answers its errors as pages too; its streams (/ui/) answer them as JSON.
        dashboard = rule.endpoint.partition(".")[0] in DASHBOARD_BLUEPRINTS
        statuses = ([401, 403] if guarded else []) + (
            [400, 404] if any(name.endswith("_id") for name in rule.arguments) else []
        )
        if dashboard:
            statuses = []
        for operations in paths.values():
            for operation in operations.values():
                # quart-schema shares one responses dict between a rule's methods.
                responses = dict(operation["responses"]) | getattr(view, TEXT_ATTRIBUTE, {})
                for status in statuses:
                    responses.setdefault(status, error | {"description": ROUTE_ERRORS[status]})
                if dashboard:
                    responses["default"] = DASHBOARD_RESPONSE
                operation["responses"] = {str(key): value for key, value in responses.items()}
                ui = dashboard or rule.rule.startswith("/ui/")
                operation["tags"] = ["dashboard" if ui else "api"]
                if guarded:
                    operation["security"] = [{"bearer": []}, {"session": []}]
        return paths, components

    def build_response_object(
        self, model: Any, headers_model: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        response, components = super().build_response_object(model, headers_model)
        if get_origin(model) is not None:
            response["description"] = ""  # not the docstring of `list`
        return response, components
