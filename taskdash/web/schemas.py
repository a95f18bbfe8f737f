"""Pydantic shapes of the JSON API: used to build responses and to document them in OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

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


class TaskCreateForm(BaseModel):
    """multipart/form-data fields of POST /task/py and /task/sh."""

    file: str = Field(description="the script file (or send its text in `script`)")
    requirements: str | None = Field(None, description="requirements.txt (python only)")
    upload: bool = Field(True, description="keep the script (true) or stream it once (false)")
    name: str | None = None
    image: str | None = None
    timeout_seconds: float | None = None
    memory_mb: int | None = None
    cpus: float | None = None
    env: str | None = Field(
        None, description='a JSON object, e.g. {"GREETING": "hi"}, or NAME=value lines'
    )
    secret_env: str | None = Field(
        None,
        description="like env, but the values are stored encrypted, masked as *** in logs, "
        "and never shown again",
    )


class ScheduleIn(BaseModel):
    """Form fields (multipart or urlencoded) or a JSON object with the same keys. A field left
    out keeps its current value; a new schedule takes the defaults shown."""

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


class Pagination(BaseModel):
    limit: int | None = None
    offset: int | None = None
