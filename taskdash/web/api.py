"""The JSON API: the seed's /task/... endpoints and what a real user needs next to them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from quart import Blueprint, Response, jsonify, request
from quart_schema import (
    DataSource,
    document_querystring,
    document_request,
    document_response,
)
from tortoise import connections

from taskdash.core.errors import Conflict, TaskdashError, UnsupportedMediaType
from taskdash.core.models import Run, ScriptType, Task, Trigger
from taskdash.engine.runs import task_limits
from taskdash.operations.tasks import (
    active_run,
    create_task,
    delete_task,
    get_run,
    get_task,
    latest_run,
    list_runs,
    list_tasks,
)
from taskdash.services import services
from taskdash.web.forms import parse_new_task, parse_page, parse_uuid
from taskdash.web.schemas import (
    DockerInfoOut,
    ErrorOut,
    HealthOut,
    MessageOut,
    Pagination,
    RunOut,
    RunStartedOut,
    TaskCreatedOut,
    TaskCreateForm,
    TaskDetailOut,
    TaskOut,
)

api = Blueprint("api", __name__)

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if hasattr(body, "model_dump"):
        body = body.model_dump(mode="json")
    elif isinstance(body, list):
        body = [item.model_dump(mode="json") for item in body]
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


async def read_form() -> tuple[dict[str, str], dict[str, Any]]:
    if request.mimetype not in FORM_TYPES:
        raise UnsupportedMediaType(
            f"send this as multipart/form-data (got {request.mimetype or 'no content type'})"
        )
    form = await request.form
    files = await request.files
    return dict(form.items()), dict(files.items())


async def create_from_request(script_type: ScriptType) -> Response:
    settings = services().settings
    form, files = await read_form()
    new = parse_new_task(script_type, form, files, settings.max_script_bytes)
    task, run = await create_task(new, services().runs, Trigger.API)
    body = TaskCreatedOut(
        message="Task created and started" if new.upload else "Script streamed and started",
        script_type=task.script_type,
        task_id=task.id,
        run_id=run.id,
        upload=new.upload,
    )
    return json_response(body, 201, {"Location": f"/task/{task.id}"})


@api.post("/task/py")
@document_request(TaskCreateForm, source=DataSource.FORM_MULTIPART)
@document_response(TaskCreatedOut, 201)
@document_response(ErrorOut, 400)
async def create_python_task() -> Response:
    """Create a Python task from an uploaded script (and optional requirements) and run it."""
    return await create_from_request(ScriptType.PYTHON)


@api.post("/task/sh")
@document_request(TaskCreateForm, source=DataSource.FORM_MULTIPART)
@document_response(TaskCreatedOut, 201)
@document_response(ErrorOut, 400)
async def create_shell_task() -> Response:
    """Create a shell task from an uploaded script and run it."""
    return await create_from_request(ScriptType.SHELL)


@api.get("/task/")
@document_querystring(Pagination)
@document_response(list[TaskOut])
async def list_all_tasks() -> Response:
    """List tasks, newest first, with their status (the total is in X-Total-Count)."""
    limit, offset = parse_page(request.args, services().settings.page_size)
    rows, total = await list_tasks(limit, offset)
    manager = services().runs
    items = [
        TaskOut.of(
            row.task,
            row.last_run,
            manager.image_of(row.task),
            row.schedule.next_run_at if row.schedule and row.schedule.enabled else None,
        )
        for row in rows
    ]
    return json_response(items, headers={"X-Total-Count": str(total)})


@api.get("/task/<task_id>")
@document_response(TaskDetailOut)
@document_response(ErrorOut, 404)
async def task_detail(task_id: str) -> Response:
    """One task: its settings, script metadata, latest run and schedule."""
    task = await get_task(parse_uuid(task_id))
    manager = services().runs
    limits = task_limits(task, services().settings)
    schedule = await task_schedule_json(task.id)
    summary = TaskOut.of(task, await latest_run(task), manager.image_of(task))
    body = TaskDetailOut(
        **summary.model_dump(),
        script_filename=task.script_filename,
        requirements=task.requirements,
        env=task.env or {},
        timeout_seconds=limits.timeout_seconds,
        memory_mb=limits.memory_mb,
        cpus=limits.cpus,
        schedule=schedule,
    )
    return json_response(body)


async def task_schedule_json(task_id: UUID) -> dict[str, Any] | None:
    scheduler = services().scheduler
    if scheduler is None:
        return None
    result: dict[str, Any] | None = await scheduler.schedule_json_for(task_id)
    return result


@api.put("/task/<task_id>")
@document_response(RunStartedOut, 202)
@document_response(ErrorOut, 409)
async def run_task(task_id: str) -> Response:
    """Start a new run of a stored task."""
    task = await get_task(parse_uuid(task_id))
    run = await services().runs.submit(task, Trigger.API)
    body = RunStartedOut(message="Task started", task_id=task.id, run_id=run.id, status=run.status)
    return json_response(body, 202)


@api.delete("/task/<task_id>")
@document_response(MessageOut)
@document_response(ErrorOut, 404)
async def remove_task(task_id: str) -> Response:
    """Stop the task's live runs, then delete it with its runs, logs and schedule."""
    task = await get_task(parse_uuid(task_id))
    await delete_task(task, services().runs, services().hub, services().scheduler)
    return json_response(MessageOut(message="Task deleted", task_id=task.id))


@api.post("/task/<task_id>/stop")
@document_response(RunOut)
@document_response(ErrorOut, 409)
async def stop_task(task_id: str) -> Response:
    """Stop the task's active run (409 when nothing runs); answers the stopped run."""
    task = await get_task(parse_uuid(task_id))
    run = await active_run(task)
    if run is None:
        raise Conflict(f"task {task.id} has no queued or running run to stop", code="not_running")
    run = await services().runs.stop(run)
    return json_response(RunOut.of(run))


@api.get("/task/<task_id>/runs")
@document_querystring(Pagination)
@document_response(list[RunOut])
async def task_runs(task_id: str) -> Response:
    """The task's runs, newest first (the total is in X-Total-Count)."""
    task = await get_task(parse_uuid(task_id))
    limit, offset = parse_page(request.args, services().settings.page_size)
    runs, total = await list_runs(task, limit, offset)
    return json_response([RunOut.of(r) for r in runs], headers={"X-Total-Count": str(total)})


@api.get("/task/<task_id>/runs/<run_id>")
@document_response(RunOut)
@document_response(ErrorOut, 404)
async def task_run(task_id: str, run_id: str) -> Response:
    """One run of the task."""
    task = await get_task(parse_uuid(task_id))
    run = await get_run(task, parse_uuid(run_id, "run id"))
    return json_response(RunOut.of(run))


@api.get("/task/<task_id>/logs")
@document_response(ErrorOut, 404)
async def task_logs(task_id: str) -> Response:
    """The stored log of the latest run (or of `?run_id=`), as plain text."""
    task = await get_task(parse_uuid(task_id))
    run = await resolve_run(task, request.args.get("run_id"))
    text = services().hub.read_text(run.id)
    headers = {
        "X-Run-Id": str(run.id),
        "X-Run-Status": run.status.value,
        "X-Log-Truncated": "true" if run.log_truncated else "false",
    }
    return Response(text, status=200, content_type="text/plain; charset=utf-8", headers=headers)


async def resolve_run(task: Task, run_id: str | None) -> Run:
    if run_id:
        return await get_run(task, parse_uuid(run_id, "run id"))
    run = await latest_run(task)
    if run is None:
        raise TaskdashError(f"task {task.id} has no run yet", code="no_run", status=404)
    return run


@api.get("/<task_id>")
@document_response(DockerInfoOut)
@document_response(ErrorOut, 404)
async def docker_info(task_id: str) -> Response:
    """Docker info of the task's latest run: live inspect while it runs, the kept one after."""
    task = await get_task(parse_uuid(task_id))
    run = await latest_run(task)
    if run is None:
        return json_response(
            DockerInfoOut(task_id=task.id, run_id=None, source="none", container=None)
        )
    live = await services().runs.live_inspect(run)
    if live is not None:
        body = DockerInfoOut(task_id=task.id, run_id=run.id, source="live", container=live)
    elif run.docker_info is not None:
        body = DockerInfoOut(
            task_id=task.id, run_id=run.id, source="kept", container=run.docker_info
        )
    else:
        body = DockerInfoOut(task_id=task.id, run_id=run.id, source="none", container=None)
    return json_response(body)


@api.get("/healthz")
@document_response(HealthOut)
@document_response(HealthOut, 503)
async def health() -> Response:
    """200 when the database and the Docker engine answer, 503 with the reason otherwise."""
    database, docker, healthy = "ok", "ok", True
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as exc:  # any failure means "not healthy", with its reason
        database, healthy = f"unavailable: {exc}", False
    try:
        version = await services().runner.ping()
        docker = f"ok (engine {version})"
    except TaskdashError as exc:
        docker, healthy = exc.message, False
    body = HealthOut(status="ok" if healthy else "unavailable", database=database, docker=docker)
    return json_response(body, 200 if healthy else 503)
