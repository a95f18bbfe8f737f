"""The htmx dashboard: full pages, or fragments when HX-Request asks."""

from __future__ import annotations

from collections.abc import Mapping

from quart import Blueprint, Response, request, url_for

from taskdash.core.errors import TaskdashError
from taskdash.core.models import Role, Task, Trigger
from taskdash.operations.runs import get_run, log_chunks
from taskdash.operations.schedules import remove_schedule, schedule_view, set_schedule
from taskdash.operations.tasks import (
    create_task,
    delete_task,
    get_task,
    list_tasks,
    run_task,
    stop_task,
    task_row,
)
from taskdash.web.auth import allow, asking
from taskdash.web.context import services
from taskdash.web.errors import shows_errors
from taskdash.web.forms import (
    parse_new_task,
    parse_page_number,
    parse_schedule_change,
    parse_script_type,
    parse_uuid,
    read_form,
)
from taskdash.web.responses import fragment, is_htmx, page, redirect_to
from taskdash.web.schemas import schedule_json
from taskdash.web.views import Pager, UploadForm, run_context, task_context

pages = Blueprint("pages", __name__)

# Messages of forms.py written for API clients, said the way the upload form asks.
FRIENDLY = {"missing_file": "Choose a script file, or paste the script into the text area."}


async def task_of(task_id: str) -> Task:
    return await get_task(parse_uuid(task_id))


# pages ------------------------------------------------------------------------------------


@pages.get("/")
@allow(Role.VIEWER)
async def index() -> Response:
    """The task list, newest first, with the upload form."""
    number = parse_page_number(request.args.get("page"))
    size = services().settings.page_size
    rows, total = await list_tasks(size, (number - 1) * size)
    pager = Pager(number, size, total)
    return await page("index.html", "_task_table.html", rows=rows, pager=pager, form=UploadForm())


@pages.get("/tasks/new")
@allow(Role.OPERATOR)
async def new_task() -> Response:
    """The upload form on its own page."""
    return await page("new.html", "_upload_form.html", form=UploadForm())


async def upload_form_again(error: TaskdashError) -> Response:
    """A rejected upload: the form again, filled in as it was sent, with the reason."""
    try:
        form, _files = await read_form()
    except TaskdashError:
        form = {}
    rejected = UploadForm.of(form, FRIENDLY.get(error.code, error.message))
    return await page("new.html", "_upload_form.html", error.status, form=rejected)


@pages.post("/tasks")
@allow(Role.OPERATOR)
@shows_errors(upload_form_again)
async def create() -> Response:
    """Create a task from the upload form, start it, and go to its page."""
    form, files = await read_form()
    script_type = parse_script_type(form.get("script_type"))
    new = parse_new_task(script_type, form, files, services().settings.max_script_bytes)
    task, _run = await create_task(services(), new, Trigger.DASHBOARD, asking())
    return redirect_to(url_for("pages.task_page", task_id=task.id))


@pages.get("/tasks/<task_id>")
@allow(Role.VIEWER)
async def task_page(task_id: str) -> Response:
    """A task: its script, live log, run history, Docker info and schedule."""
    task = await task_of(task_id)
    return await page("task.html", "_task_main.html", **await task_context(services(), task))


@pages.get("/tasks/<task_id>/row")
@allow(Role.VIEWER)
async def task_row_fragment(task_id: str) -> Response:
    """One row of the task list (refreshed when the task's status changes)."""
    task = await task_of(task_id)
    return await fragment("_task_row.html", row=await task_row(task))


@pages.get("/tasks/<task_id>/history")
@allow(Role.VIEWER)
async def task_history(task_id: str) -> Response:
    """The run history, duration chart and Docker info (refreshed when a run ends)."""
    task = await task_of(task_id)
    return await page("task.html", "_task_history.html", **await task_context(services(), task))


@pages.get("/tasks/<task_id>/actions")
@allow(Role.VIEWER)
async def task_actions(task_id: str) -> Response:
    """The Run / Stop / Delete buttons of the task page, for the task's current state."""
    task = await task_of(task_id)
    return await page("task.html", "_task_actions.html", **await task_context(services(), task))


@pages.get("/tasks/<task_id>/runs/<run_id>")
@allow(Role.VIEWER)
async def run_page(task_id: str, run_id: str) -> Response:
    """One run: its outcome and its full log."""
    task = await task_of(task_id)
    run = await get_run(task, parse_uuid(run_id, "run id"))
    return await page("run.html", "_run_main.html", **await run_context(services(), task, run))


@pages.get("/tasks/<task_id>/runs/<run_id>/log.txt")
@allow(Role.VIEWER)
async def run_log_text(task_id: str, run_id: str) -> Response:
    """The run's stored log as a plain-text download."""
    run = await get_run(await task_of(task_id), parse_uuid(run_id, "run id"))
    disposition = f'attachment; filename="run-{run.id}.log"'
    return Response(
        log_chunks(services(), run),
        content_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"},
    )


# actions ----------------------------------------------------------------------------------


async def after_action(task: Task, form: Mapping[str, str], message: str) -> Response:
    """A list row answers with its refreshed row; the task page reloads itself."""
    if is_htmx() and form.get("view") == "row":
        return await fragment("_task_row.html", row=await task_row(task), flash=message)
    return redirect_to(url_for("pages.task_page", task_id=task.id))


@pages.post("/tasks/<task_id>/run")
@allow(Role.OPERATOR)
async def run(task_id: str) -> Response:
    """Start a new run of the task."""
    task = await task_of(task_id)
    form, _files = await read_form()
    await run_task(services(), task, Trigger.DASHBOARD, asking())
    return await after_action(task, form, f"Started “{task.name}”.")


@pages.post("/tasks/<task_id>/stop")
@allow(Role.OPERATOR)
async def stop(task_id: str) -> Response:
    """Stop the task's queued or running run."""
    task = await task_of(task_id)
    form, _files = await read_form()
    run = await stop_task(services(), task)
    return await after_action(task, form, f"Stopped “{task.name}” ({run.status.value}).")


@pages.get("/tasks/<task_id>/delete")
@allow(Role.OPERATOR)
async def confirm_delete(task_id: str) -> Response:
    """Ask before deleting (the page a browser without JavaScript gets)."""
    task = await task_of(task_id)
    return await page("delete.html", "_delete_confirm.html", task=task)


@pages.post("/tasks/<task_id>/delete")
@allow(Role.OPERATOR)
async def delete(task_id: str) -> Response:
    """Delete the task with its runs, logs and schedule, once confirmed."""
    task = await task_of(task_id)
    form, _files = await read_form()
    if form.get("confirmed") != "yes":
        return await page("delete.html", "_delete_confirm.html", task=task)
    await delete_task(services(), task)
    if is_htmx() and form.get("view") == "row":
        return await fragment("_flash.html", oob=True, flash=f"Deleted “{task.name}”.")
    return redirect_to(url_for("pages.index"))


# schedule ---------------------------------------------------------------------------------


async def schedule_card(task: Task, status: int = 200, error: str | None = None) -> Response:
    view = await schedule_view(services(), task.id)
    return await fragment(
        "_schedule.html", status, task=task, schedule=schedule_json(view), schedule_error=error
    )


async def schedule_card_again(error: TaskdashError) -> Response | None:
    """A rejected schedule change: the card again with the reason (htmx only)."""
    if not is_htmx():
        return None
    task = await task_of(request.view_args["task_id"] if request.view_args else "")
    return await schedule_card(task, error.status, error.message)


async def after_schedule_change(task: Task) -> Response:
    if is_htmx():
        return await schedule_card(task)
    return redirect_to(url_for("pages.task_page", task_id=task.id))


@pages.post("/tasks/<task_id>/schedule")
@allow(Role.OPERATOR)
@shows_errors(schedule_card_again)
async def schedule(task_id: str) -> Response:
    """Set the task's cron schedule from the schedule form (a field left out keeps its value:
    only the Pause and Resume buttons send `enabled`)."""
    task = await task_of(task_id)
    form, _files = await read_form()
    await set_schedule(services(), task.id, parse_schedule_change(form))
    return await after_schedule_change(task)


@pages.post("/tasks/<task_id>/schedule/delete")
@allow(Role.OPERATOR)
@shows_errors(schedule_card_again)
async def unschedule(task_id: str) -> Response:
    """Remove the task's schedule."""
    task = await task_of(task_id)
    await read_form()
    await remove_schedule(services(), task.id)
    return await after_schedule_change(task)
