"""Server-sent event routes: a task's log for API clients, the dashboard's live views."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from quart import Blueprint, Quart, Response, current_app, request

from taskdash.core.errors import BadRequest
from taskdash.core.models import Role
from taskdash.operations.runs import get_run, latest_run
from taskdash.operations.tasks import get_task
from taskdash.web.auth import allow
from taskdash.web.context import services
from taskdash.web.forms import parse_number, parse_uuid
from taskdash.web.schemas import document_text
from taskdash.web.sse import (
    Badges,
    HtmlRenderer,
    RunFollower,
    status_feed,
    task_log_stream,
    task_view_stream,
)

streams = Blueprint("streams", __name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def keepalive_seconds() -> float:
    """The idle interval between keep-alive comments (TASKDASH_SSE_KEEPALIVE_SECONDS)."""
    return services().settings.sse_keepalive_seconds


def resume_after() -> int:
    """The last line the client has: its `Last-Event-ID`, or `?after=` (a page that rendered
    the stored lines itself connects with it); the larger wins."""
    raw = (request.headers.get("Last-Event-ID") or "").strip()
    if raw and not raw.isdigit():
        raise BadRequest(f"Last-Event-ID must be a line number, not {raw!r}")
    after = parse_number(request.args.get("after"), "after", int, 0, 10**12) or 0
    return max(int(raw or 0), after)


def event_stream(body: AsyncIterator[str]) -> Response:
    response = Response(encode(body), status=200, headers=SSE_HEADERS)
    response.timeout = None  # the stream lasts as long as the run, not a request
    return response


async def encode(body: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for chunk in body:
        yield chunk.encode("utf-8", "replace")


# routes -----------------------------------------------------------------------------------------


@streams.get("/task/<task_id>/logs/stream")
@allow(Role.VIEWER)
@document_text(
    "text/event-stream",
    "events `line` (id = line number), `status`, `end`; keep-alive comments",
)
async def task_logs_stream(task_id: str) -> Response:
    """Live log of the latest run (or of `?run_id=`) as server-sent events.

    Events: `line` (id = line number, data = the raw line), `status` (JSON run_id, status),
    `end` (JSON run_id, status, exit_code; the stream then closes), and `: keep-alive`
    comments. Send `Last-Event-ID` (or `?after=N`) to resume after a line. With no run yet,
    waits for the task's next run.
    """
    task = await get_task(parse_uuid(task_id))
    after = resume_after()
    run_id: UUID | None = None
    if request.args.get("run_id"):
        run_id = (await get_run(task, parse_uuid(request.args["run_id"], "run id"))).id
    else:
        run = await latest_run(task)
        run_id = run.id if run is not None else None
    logs, replica = services().logs, services().settings.replica
    return event_stream(task_log_stream(logs, task.id, run_id, after, keepalive_seconds(), replica))


@streams.get("/ui/tasks/<task_id>/stream")
@allow(Role.VIEWER)
async def task_page_stream(task_id: str) -> Response:
    """The task page's one stream: the run it shows (`?run_id=`, lines after `?after=`) as HTML
    fragments and badges, then `event: run` when the task has another run, so the page can
    load its view again."""
    task = await get_task(parse_uuid(task_id))
    shown: UUID | None = None
    if request.args.get("run_id"):
        shown = (await get_run(task, parse_uuid(request.args["run_id"], "run id"))).id
    after, badges = resume_after(), Badges(app_object())
    return event_stream(
        task_view_stream(
            services().logs,
            task.id,
            shown,
            after,
            keepalive_seconds(),
            badges,
            services().settings.replica,
        )
    )


@streams.get("/ui/tasks/<task_id>/runs/<run_id>/stream")
@allow(Role.VIEWER)
async def run_page_stream(task_id: str, run_id: str) -> Response:
    """A run's live log for the dashboard: lines as HTML fragments, status as badges."""
    task = await get_task(parse_uuid(task_id))
    run = await get_run(task, parse_uuid(run_id, "run id"))
    render = HtmlRenderer(Badges(app_object()))
    follower = RunFollower(
        services().logs,
        run.id,
        resume_after(),
        render,
        keepalive_seconds(),
        services().settings.replica,
    )
    return event_stream(follower.stream())


@streams.get("/ui/events")
@allow(Role.VIEWER)
async def status_events() -> Response:
    """Every run status change as `event: task-<task_id>` with the rendered badge."""
    badges = Badges(app_object())
    return event_stream(status_feed(services().hub, badges, keepalive_seconds()))


def app_object() -> Quart:
    app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
    return app  # type: ignore[no-any-return]
