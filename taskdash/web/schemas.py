"""Pydantic shapes of the JSON API: used to build responses and to document them in OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from taskdash.core.models import Run, RunStatus, ScriptType, Task, Trigger


class ErrorBody(BaseModel):
    code: str
    message: str
    status: int


class ErrorOut(BaseModel):
    error: ErrorBody


class MessageOut(BaseModel):
    message: str
    task_id: UUID


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


class TaskDetailOut(TaskOut):
    script_filename: str
    requirements: str | None
    env: dict[str, str]
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


class HealthOut(BaseModel):
    status: str
    database: str
    docker: str


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
    env: str | None = Field(None, description='a JSON object, e.g. {"GREETING": "hi"}')


class Pagination(BaseModel):
    limit: int | None = None
    offset: int | None = None
