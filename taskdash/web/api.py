"""The JSON API: the seed's /task/... endpoints and what a real user needs next to them."""

from __future__ import annotations

from quart import Blueprint, Response, request
from quart_schema import DataSource, document_querystring, document_request, document_response

from taskdash.core.models import Role, ScriptType, Task, Trigger
from taskdash.engine.spec import task_limits
from taskdash.operations.health import check_health
from taskdash.operations.runs import (
    chosen_run,
    container_info,
    get_run,
    latest_run,
    list_runs,
    log_chunks,
)
from taskdash.operations.schedules import schedule_view
from taskdash.operations.tasks import (
    create_task,
    delete_task,
    get_task,
    list_tasks,
    run_task,
    secret_names,
    stop_task,
)
from taskdash.web.auth import allow, asking, public
from taskdash.web.context import services
from taskdash.web.forms import parse_new_task, parse_page, parse_uuid, read_form
from taskdash.web.responses import json_response
from taskdash.web.schemas import (
    DockerInfoOut,
    ErrorOut,
    HealthOut,
    LogQuery,
    LoopLagOut,
    MessageOut,
    Pagination,
    RunOut,
    RunStartedOut,
    TaskCreatedOut,
    TaskCreateForm,
    TaskDetailOut,
    TaskOut,
    WhoAmIOut,
    document_text,
    schedule_json,
)

api = Blueprint("api", __name__)


async def task_of(task_id: str) -> Task:
    return await get_task(parse_uuid(task_id))


async def create_from_request(script_type: ScriptType) -> Response:
    form, files = await read_form()
    new = parse_new_task(script_type, form, files, services().settings.max_script_bytes)
    task, run = await create_task(services(), new, Trigger.API, asking())
    body = TaskCreatedOut(
        message="Task created and started" if new.upload else "Script streamed and started",
        script_type=task.script_type,
        task_id=task.id,
        run_id=run.id,
        upload=new.upload,
    )
    return json_response(body, 201, {"Location": f"/task/{task.id}"})


@api.post("/task/py")
@allow(Role.OPERATOR)
@document_request(TaskCreateForm, source=DataSource.FORM_MULTIPART)
@document_response(TaskCreatedOut, 201)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 413)
@document_response(ErrorOut, 415)
@document_response(ErrorOut, 429)
@document_response(ErrorOut, 503)
async def create_python_task() -> Response:
    """Create a Python task from an uploaded script (and optional requirements) and run it."""
    return await create_from_request(ScriptType.PYTHON)


@api.post("/task/sh")
@allow(Role.OPERATOR)
@document_request(TaskCreateForm, source=DataSource.FORM_MULTIPART)
@document_response(TaskCreatedOut, 201)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 413)
@document_response(ErrorOut, 415)
@document_response(ErrorOut, 429)
@document_response(ErrorOut, 503)
async def create_shell_task() -> Response:
    """Create a shell task from an uploaded script and run it."""
    return await create_from_request(ScriptType.SHELL)


@api.get("/task/")
@allow(Role.VIEWER)
@document_querystring(Pagination)
@document_response(list[TaskOut])
@document_response(ErrorOut, 400)
async def list_all_tasks() -> Response:
    """List tasks, newest first, with their status (the total is in X-Total-Count)."""
    settings = services().settings
    limit, offset = parse_page(request.args, settings.page_size)
    rows, total = await list_tasks(limit, offset)
    items = [
        TaskOut.of(
            row.task,
            row.last_run,
            settings.image_for(row.task.script_type, row.task.image),
            row.schedule.next_run_at if row.schedule and row.schedule.enabled else None,
        )
        for row in rows
    ]
    return json_response(items, headers={"X-Total-Count": str(total)})


@api.get("/task/<task_id>")
@allow(Role.VIEWER)
@document_response(TaskDetailOut)
@document_response(ErrorOut, 404)
async def task_detail(task_id: str) -> Response:
    """One task: its settings, script metadata, latest run and schedule."""
    task = await task_of(task_id)
    settings = services().settings
    limits = task_limits(task, settings)
    image = settings.image_for(task.script_type, task.image)
    summary = TaskOut.of(task, await latest_run(task), image)
    body = TaskDetailOut(
        **summary.model_dump(),
        script_filename=task.script_filename,
        requirements=task.requirements,
        env=task.env or {},
        secret_env={name: "***" for name in secret_names(services(), task)},
        timeout_seconds=limits.timeout_seconds,
        memory_mb=limits.memory_mb,
        cpus=limits.cpus,
        schedule=schedule_json(await schedule_view(services(), task.id)),
    )
    return json_response(body)


@api.put("/task/<task_id>")
@allow(Role.OPERATOR)
@document_response(RunStartedOut, 202)
@document_response(ErrorOut, 409)
@document_response(ErrorOut, 429)
@document_response(ErrorOut, 503)
async def start_run(task_id: str) -> Response:
    """Start a new run of a stored task."""
    task = await task_of(task_id)
    run = await run_task(services(), task, Trigger.API, asking())
    body = RunStartedOut(message="Task started", task_id=task.id, run_id=run.id, status=run.status)
    return json_response(body, 202)


@api.delete("/task/<task_id>")
@allow(Role.OPERATOR)
@document_response(MessageOut)
@document_response(ErrorOut, 404)
async def remove_task(task_id: str) -> Response:
    """Stop the task's live runs, then delete it with its runs, logs and schedule."""
    task = await task_of(task_id)
    await delete_task(services(), task)
    return json_response(MessageOut(message="Task deleted", task_id=task.id))


@api.post("/task/<task_id>/stop")
@allow(Role.OPERATOR)
@document_response(RunOut)
@document_response(ErrorOut, 409)
async def stop_run(task_id: str) -> Response:
    """Stop the task's active run (409 when nothing runs); answers the stopped run."""
    run = await stop_task(services(), await task_of(task_id))
    return json_response(RunOut.of(run))


@api.get("/task/<task_id>/runs")
@allow(Role.VIEWER)
@document_querystring(Pagination)
@document_response(list[RunOut])
async def task_runs(task_id: str) -> Response:
    """The task's runs, newest first (the total is in X-Total-Count)."""
    task = await task_of(task_id)
    limit, offset = parse_page(request.args, services().settings.page_size)
    runs, total = await list_runs(task, limit, offset)
    return json_response([RunOut.of(r) for r in runs], headers={"X-Total-Count": str(total)})


@api.get("/task/<task_id>/runs/<run_id>")
@allow(Role.VIEWER)
@document_response(RunOut)
@document_response(ErrorOut, 404)
async def task_run(task_id: str, run_id: str) -> Response:
    """One run of the task."""
    run = await get_run(await task_of(task_id), parse_uuid(run_id, "run id"))
    return json_response(RunOut.of(run))


@api.get("/task/<task_id>/logs")
@allow(Role.VIEWER)
@document_querystring(LogQuery)
@document_text("text/plain", "the stored log; X-Run-Id, X-Run-Status, X-Log-Truncated")
@document_response(ErrorOut, 404)
async def task_logs(task_id: str) -> Response:
    """The stored log of the latest run (or of `?run_id=`), as plain text."""
    task = await task_of(task_id)
    asked = request.args.get("run_id")
    run = await chosen_run(task, parse_uuid(asked, "run id") if asked else None)
    headers = {
        "X-Run-Id": str(run.id),
        "X-Run-Status": run.status.value,
        "X-Log-Truncated": "true" if run.log_truncated else "false",
    }
    return Response(
        log_chunks(services(), run),
        status=200,
        content_type="text/plain; charset=utf-8",
        headers=headers,
    )


@api.get("/<task_id>")
@allow(Role.VIEWER)
@document_response(DockerInfoOut)
@document_response(ErrorOut, 404)
async def docker_info(task_id: str) -> Response:
    """Docker info of the task's latest run: live inspect while it runs, the kept one after."""
    task = await task_of(task_id)
    run = await latest_run(task)
    info = await container_info(services(), run)
    body = DockerInfoOut(
        task_id=task.id,
        run_id=run.id if run is not None else None,
        source=info.source,
        container=info.data,
    )
    return json_response(body)


@api.get("/whoami")
@allow(Role.VIEWER)
@document_response(WhoAmIOut)
async def whoami() -> Response:
    """Who the request's credentials stand for, and their role."""
    who = asking()
    return json_response(WhoAmIOut(kind=who.kind, name=who.name, role=who.role))


@api.get("/healthz")
@public
@document_response(HealthOut)
@document_response(HealthOut, 503)
async def health() -> Response:
    """200 when the database and the Docker engine answer, 503 with the reason otherwise."""
    report = await check_health(services())
    body = HealthOut(
        status="ok" if report.healthy else "unavailable",
        database=report.database,
        docker=report.docker,
        loop_lag=LoopLagOut(**vars(report.loop_lag)),
    )
    return json_response(body, 200 if report.healthy else 503)
