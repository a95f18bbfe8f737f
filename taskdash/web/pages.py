"""The htmx dashboard: full pages, or fragments when HX-Request asks."""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from markupsafe import Markup
from quart import Blueprint, Response, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from taskdash.core.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    ServiceUnavailable,
    TaskdashError,
)
from taskdash.core.models import (
    ACTIVE_STATUSES,
    OverlapPolicy,
    Run,
    Schedule,
    ScriptType,
    Task,
    Trigger,
)
from taskdash.logs.ansi import ansi_to_html
from taskdash.logs.hub import LogHub
from taskdash.operations.tasks import (
    TaskRow,
    active_run,
    create_task,
    delete_task,
    get_run,
    get_task,
    latest_run,
    list_runs,
    list_tasks,
    rows_for,
)
from taskdash.services import services
from taskdash.web.forms import parse_new_task, parse_uuid
from taskdash.web.schedules import parse_change

pages = Blueprint("pages", __name__)

TASK_LOG_LINES = 2_000  # the task page shows the tail; the run page and log.txt have the rest
RUN_LOG_LINES = 50_000
HISTORY_RUNS = 30
NEVER = "0001-01-01"  # Docker's zero time: a container that has not finished
# Messages of forms.py written for API clients, said the way the upload form asks.
FRIENDLY = {"missing_file": "Choose a script file, or paste the script into the text area."}


# views: the shapes templates receive -------------------------------------------------------


@dataclass(frozen=True)
class Pager:
    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def first_item(self) -> int:
        return min(self.total, (self.page - 1) * self.size + 1)

    @property
    def last_item(self) -> int:
        return min(self.total, self.page * self.size)


@dataclass(frozen=True)
class UploadForm:
    """What the person typed, so a rejected upload comes back filled in, with the reason."""

    name: str = ""
    script_type: str = ScriptType.PYTHON.value
    script: str = ""
    requirements: str = ""
    upload: bool = True
    error: str | None = None

    @classmethod
    def of(cls, form: Mapping[str, str], error: str | None = None) -> UploadForm:
        return cls(
            name=form.get("name", ""),
            script_type=form.get("script_type", ScriptType.PYTHON.value),
            script=form.get("script", ""),
            requirements=form.get("requirements", ""),
            upload=form.get("upload", "true") != "false",
            error=error,
        )


@dataclass(frozen=True)
class LogView:
    run: Run
    lines: list[tuple[int, Markup]]
    total: int
    live: bool
    stream_url: str

    @property
    def skipped(self) -> int:
        return self.lines[0][0] - 1 if self.lines else self.total

    @property
    def last_number(self) -> int:
        return self.lines[-1][0] if self.lines else 0


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    status: str
    label: str
    href: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    max_seconds: float = 0.0


# helpers ----------------------------------------------------------------------------------


def is_htmx() -> bool:
    """An htmx request wants a fragment, except when it restores history from the server."""
    headers = request.headers
    return headers.get("HX-Request") == "true" and "HX-History-Restore-Request" not in headers


async def page(full: str, fragment: str, status: int = 200, **context: Any) -> Response:
    """The full page, or only its fragment for htmx; both come from the same partials."""
    body = await render_template(fragment if is_htmx() else full, **context)
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.headers["Vary"] = "HX-Request"
    return response


async def fragment(template: str, status: int = 200, **context: Any) -> Response:
    body = await render_template(template, **context)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def redirect_to(url: str) -> Response:
    """htmx follows HX-Redirect with a full navigation; a plain form gets a 303."""
    if is_htmx():
        return Response("", status=200, headers={"HX-Redirect": url})
    return Response("", status=303, headers={"Location": url})


def parse_page_number(value: str | None) -> int:
    if value is None or value.strip() == "":
        return 1
    if not value.strip().isdigit() or int(value) < 1:
        raise BadRequest(f"'page' must be a whole number from 1, not {value!r}")
    return int(value)


def parse_script_type(value: str | None) -> ScriptType:
    try:
        return ScriptType((value or "").strip().lower())
    except ValueError:
        raise BadRequest(
            f"choose a script type: 'python' or 'shell' (got {value!r})", code="bad_script_type"
        ) from None


def line_html(text: str) -> Markup:
    """A stored log line as safe HTML: escaped, its ANSI colours as spans (as the stream does)."""
    return Markup(ansi_to_html(text))


def read_tail(hub: LogHub, run_id: UUID, limit: int) -> tuple[list[tuple[int, str]], int]:
    tail: deque[tuple[int, str]] = deque(maxlen=limit)
    total = 0
    for number, text in hub.read_lines(run_id):
        tail.append((number, text))
        total = number
    return list(tail), total


async def log_view(task: Task, run: Run | None, limit: int) -> LogView | None:
    if run is None:
        return None
    tail, total = await asyncio.to_thread(read_tail, services().hub, run.id, limit)
    return LogView(
        run=run,
        lines=[(number, line_html(text)) for number, text in tail],
        total=total,
        live=run.status in ACTIVE_STATUSES,
        stream_url=f"/ui/tasks/{task.id}/runs/{run.id}/stream",
    )


def task_stream_url(task: Task, log: LogView | None) -> str:
    """The task page's stream: the shown run's lines after those rendered, then its next run."""
    if log is None:
        return f"/ui/tasks/{task.id}/stream"
    return f"/ui/tasks/{task.id}/stream?run_id={log.run.id}&after={log.total}"


def script_lines(task: Task) -> list[str]:
    if task.script is None:
        return []
    return bytes(task.script).decode("utf-8", "replace").splitlines()


def duration_chart(task: Task, runs: list[Run], width: int = 640, height: int = 120) -> Chart:
    """Bars of recent run durations, oldest on the left; runs without a duration get a stub."""
    ordered = list(reversed(runs))
    if not ordered:
        return Chart(width, height)
    longest = max((r.duration_seconds or 0.0 for r in ordered), default=0.0)
    slot = width / max(len(ordered), 12)
    bars = []
    for index, run in enumerate(ordered):
        seconds = run.duration_seconds
        bar_height = max(3.0, (seconds or 0.0) / (longest or 1.0) * (height - 4))
        label = f"{run.status.value}, " + (
            format_duration(seconds) if seconds is not None else "no duration"
        )
        bars.append(
            Bar(
                x=round(index * slot + slot * 0.15, 1),
                y=round(height - bar_height, 1),
                width=round(slot * 0.7, 1),
                height=round(bar_height, 1),
                status=run.status.value,
                label=f"{format_time(run.queued_at)}: {label}",
                href=f"/tasks/{task.id}/runs/{run.id}",
            )
        )
    return Chart(width, height, bars, longest)


def docker_time(value: object) -> str:
    """Docker's RFC 3339 nanosecond time, to the second, as the rest of the page shows times."""
    text = str(value or "")
    if len(text) < 19 or text.startswith(NEVER):
        return ""
    return f"{text[:10]} {text[11:19]} UTC"


def docker_facts(info: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The few fields of `docker inspect` a person looks for first."""
    if not info:
        return []
    state = info.get("State") or {}
    host = info.get("HostConfig") or {}
    config = info.get("Config") or {}
    memory = host.get("Memory") or 0
    facts = [
        ("Container", str(info.get("Id", ""))[:12]),
        ("Name", str(info.get("Name", "")).lstrip("/")),
        ("Image", str(config.get("Image", ""))),
        ("State", str(state.get("Status", ""))),
        ("Exit code", str(state.get("ExitCode", ""))),
        ("OOM killed", "yes" if state.get("OOMKilled") else "no"),
        ("Started", docker_time(state.get("StartedAt"))),
        ("Finished", docker_time(state.get("FinishedAt"))),
        ("User", str(config.get("User", "")) or "root"),
        ("Network", str(host.get("NetworkMode", ""))),
        ("Memory limit", f"{memory // (1024 * 1024)} MiB" if memory else "none"),
        ("CPUs", f"{(host.get('NanoCpus') or 0) / 1e9:g}"),
        ("Read-only root", "yes" if host.get("ReadonlyRootfs") else "no"),
    ]
    running = state.get("Running", False)
    return [
        (label, value)
        for label, value in facts
        if value and not value.startswith(NEVER) and not (running and label == "Exit code")
    ]


async def docker_info_of(run: Run | None) -> tuple[str, dict[str, Any] | None]:
    """The live inspect while the container runs, the kept one after; never fails the page."""
    if run is None:
        return "none", None
    try:
        live = await services().runs.live_inspect(run)
    except TaskdashError:
        live = None
    if live is not None:
        return "live", live
    return ("kept", run.docker_info) if run.docker_info else ("none", None)


async def schedule_of(task_id: UUID) -> dict[str, Any] | None:
    scheduler = services().scheduler
    if scheduler is None:
        return None
    found: dict[str, Any] | None = await scheduler.schedule_json_for(task_id)
    return found


async def task_row(task: Task) -> TaskRow:
    return (await rows_for([task]))[0]


async def read_form() -> tuple[dict[str, str], dict[str, Any]]:
    """The submitted form; a body over the size limit is a clear PayloadTooLarge, not a 413 page."""
    try:
        form = await request.form
        files = await request.files
    except RequestEntityTooLarge:
        limit = services().settings.max_script_bytes
        raise PayloadTooLarge(
            f"the upload is too large: scripts and requirements may be at most {limit} bytes each"
        ) from None
    return dict(form.items()), dict(files.items())


async def task_context(task: Task) -> dict[str, Any]:
    run = await latest_run(task)
    runs, run_count = await list_runs(task, HISTORY_RUNS, 0)
    source, info = await docker_info_of(run)
    log = await log_view(task, run, TASK_LOG_LINES)
    return {
        "task": task,
        "run": run,
        "active": run is not None and run.status in ACTIVE_STATUSES,
        "log": log,
        "stream_url": task_stream_url(task, log),
        "runs": runs,
        "run_count": run_count,
        "chart": duration_chart(task, runs),
        "docker_source": source,
        "docker_facts": docker_facts(info),
        "docker_json": json.dumps(info, indent=2, sort_keys=True) if info else "",
        "script_lines": script_lines(task),
        "schedule": await schedule_of(task.id),
        "scheduler_ready": services().scheduler is not None,
    }


# template filters -------------------------------------------------------------------------


@pages.app_template_filter("when")
def format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


@pages.app_template_filter("short_when")
def format_short_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%b %d, %H:%M:%S")


@pages.app_template_filter("duration")
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


@pages.app_template_filter("fire_time")
def format_fire_time(value: str | None, zone: str) -> str:
    """A schedule's time (ISO text from its JSON) on its own zone's clock, e.g. Mon 09:00 CET."""
    if not value:
        return ""
    when = datetime.fromisoformat(value).astimezone(ZoneInfo(zone))
    return when.strftime("%a %Y-%m-%d %H:%M %Z")


@pages.app_template_filter("iso")
def format_iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


# pages ------------------------------------------------------------------------------------


@pages.get("/")
async def index() -> Response:
    """The task list, newest first, with the upload form."""
    number = parse_page_number(request.args.get("page"))
    size = services().settings.page_size
    rows, total = await list_tasks(size, (number - 1) * size)
    pager = Pager(number, size, total)
    return await page("index.html", "_task_table.html", rows=rows, pager=pager, form=UploadForm())


@pages.get("/tasks/new")
async def new_task() -> Response:
    """The upload form on its own page."""
    return await page("new.html", "_upload_form.html", form=UploadForm())


@pages.post("/tasks")
async def create() -> Response:
    """Create a task from the upload form, start it, and go to its page."""
    form: dict[str, str] = {}
    try:
        form, files = await read_form()
        script_type = parse_script_type(form.get("script_type"))
        limit = services().settings.max_script_bytes
        new = parse_new_task(script_type, form, files, limit)
        task, _run = await create_task(new, services().runs, Trigger.DASHBOARD)
    except TaskdashError as error:
        rejected = UploadForm.of(form, FRIENDLY.get(error.code, error.message))
        return await page("new.html", "_upload_form.html", error.status, form=rejected)
    return redirect_to(url_for("pages.task_page", task_id=task.id))


@pages.get("/tasks/<task_id>")
async def task_page(task_id: str) -> Response:
    """A task: its script, live log, run history, Docker info and schedule."""
    task = await get_task(parse_uuid(task_id))
    return await page("task.html", "_task_main.html", **await task_context(task))


@pages.get("/tasks/<task_id>/row")
async def task_row_fragment(task_id: str) -> Response:
    """One row of the task list (refreshed when the task's status changes)."""
    task = await get_task(parse_uuid(task_id))
    return await fragment("_task_row.html", row=await task_row(task))


@pages.get("/tasks/<task_id>/history")
async def task_history(task_id: str) -> Response:
    """The run history, duration chart and Docker info (refreshed when a run ends)."""
    task = await get_task(parse_uuid(task_id))
    return await page("task.html", "_task_history.html", **await task_context(task))


@pages.get("/tasks/<task_id>/actions")
async def task_actions(task_id: str) -> Response:
    """The Run / Stop / Delete buttons of the task page, for the task's current state."""
    task = await get_task(parse_uuid(task_id))
    return await page("task.html", "_task_actions.html", **await task_context(task))


@pages.get("/tasks/<task_id>/runs/<run_id>")
async def run_page(task_id: str, run_id: str) -> Response:
    """One run: its outcome and its full log."""
    task = await get_task(parse_uuid(task_id))
    run = await get_run(task, parse_uuid(run_id, "run id"))
    source, info = await docker_info_of(run)
    context: dict[str, Any] = {
        "task": task,
        "run": run,
        "log": await log_view(task, run, RUN_LOG_LINES),
        "docker_source": source,
        "docker_facts": docker_facts(info),
        "docker_json": json.dumps(info, indent=2, sort_keys=True) if info else "",
    }
    return await page("run.html", "_run_main.html", **context)


@pages.get("/tasks/<task_id>/runs/<run_id>/log.txt")
async def run_log_text(task_id: str, run_id: str) -> Response:
    """The run's stored log as a plain-text download."""
    task = await get_task(parse_uuid(task_id))
    run = await get_run(task, parse_uuid(run_id, "run id"))
    text = await asyncio.to_thread(services().hub.read_text, run.id)
    disposition = f'attachment; filename="run-{run.id}.log"'
    return Response(
        text,
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
async def run_task(task_id: str) -> Response:
    """Start a new run of the task."""
    task = await get_task(parse_uuid(task_id))
    form, _files = await read_form()
    await services().runs.submit(task, Trigger.DASHBOARD)
    return await after_action(task, form, f"Started “{task.name}”.")


@pages.post("/tasks/<task_id>/stop")
async def stop_task(task_id: str) -> Response:
    """Stop the task's queued or running run."""
    task = await get_task(parse_uuid(task_id))
    form, _files = await read_form()
    run = await active_run(task)
    if run is None:
        raise Conflict(f"“{task.name}” has no queued or running run to stop", code="not_running")
    run = await services().runs.stop(run)
    return await after_action(task, form, f"Stopped “{task.name}” ({run.status.value}).")


@pages.get("/tasks/<task_id>/delete")
async def confirm_delete(task_id: str) -> Response:
    """Ask before deleting (the page a browser without JavaScript gets)."""
    task = await get_task(parse_uuid(task_id))
    return await page("delete.html", "_delete_confirm.html", task=task)


@pages.post("/tasks/<task_id>/delete")
async def delete(task_id: str) -> Response:
    """Delete the task with its runs, logs and schedule, once confirmed."""
    task = await get_task(parse_uuid(task_id))
    form, _files = await read_form()
    if form.get("confirmed") != "yes":
        return await page("delete.html", "_delete_confirm.html", task=task)
    await delete_task(task, services().runs, services().hub, services().scheduler)
    if is_htmx() and form.get("view") == "row":
        return await fragment("_flash.html", oob=True, flash=f"Deleted “{task.name}”.")
    return redirect_to(url_for("pages.index"))


# schedule ---------------------------------------------------------------------------------


async def change_schedule(task: Task, form: Mapping[str, str], method: str) -> None:
    """Ask the Scheduler to set, change or remove the task's schedule (it validates the cron).

    The form changes an existing schedule like PATCH: a field it leaves out (`enabled`, sent
    only by the Pause / Resume buttons) keeps its value.
    """
    scheduler = services().scheduler
    if scheduler is None:
        raise ServiceUnavailable("scheduling is not available on this server yet")
    if method == "remove_schedule":
        await scheduler.remove_schedule(task.id)
        return
    change = parse_change(form)
    if change.cron_expression is None:
        raise BadRequest("enter a cron expression, such as '*/15 * * * *'")
    if await Schedule.exists(task_id=task.id):
        await scheduler.update_schedule(
            task.id,
            cron_expression=change.cron_expression,
            timezone=change.timezone,
            enabled=change.enabled,
            overlap=change.overlap,
        )
    else:
        await scheduler.set_schedule(
            task.id,
            change.cron_expression,
            change.timezone,
            enabled=change.enabled is not False,
            overlap=change.overlap or OverlapPolicy.SKIP,
        )


async def schedule_answer(task: Task, form: Mapping[str, str], method: str) -> Response:
    try:
        await change_schedule(task, form, method)
    except TaskdashError as error:
        if not is_htmx():
            raise
        context = {"task": task, "schedule": await schedule_of(task.id)}
        return await fragment(
            "_schedule.html", error.status, schedule_error=error.message, **context
        )
    if is_htmx():
        return await fragment("_schedule.html", task=task, schedule=await schedule_of(task.id))
    return redirect_to(url_for("pages.task_page", task_id=task.id))


@pages.post("/tasks/<task_id>/schedule")
async def schedule_task(task_id: str) -> Response:
    """Set the task's cron schedule from the schedule form."""
    task = await get_task(parse_uuid(task_id))
    form, _files = await read_form()
    return await schedule_answer(task, form, "set_schedule")


@pages.post("/tasks/<task_id>/schedule/delete")
async def unschedule_task(task_id: str) -> Response:
    """Remove the task's schedule."""
    task = await get_task(parse_uuid(task_id))
    form, _files = await read_form()
    return await schedule_answer(task, form, "remove_schedule")


# errors -----------------------------------------------------------------------------------


async def render_error_page(error: TaskdashError) -> Response:
    """A TaskdashError from a page route: the error page, or for htmx a message in #flash."""
    if is_htmx():
        response = await fragment("_error.html", error.status, error=error)
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return await page("error.html", "_error.html", error.status, error=error)
