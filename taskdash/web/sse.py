"""Server-sent event streams of run logs and status changes.

Every log stream subscribes to the run before it replays the stored log, so no line falls
between the two; lines carry their number as the SSE `id:` and anything at or below the last
number sent (or the client's `Last-Event-ID`) is skipped, so none arrives twice. A follower that
falls too far behind is dropped by the hub: its stream then ends *without* `event: end`, and the
client reconnects with `Last-Event-ID` to resume from the stored log (browsers do so by
themselves).

`GET /task/<id>/logs/stream` with no `run_id` follows the task's latest run; when the task has
no run yet it waits for the next one (with keep-alives) instead of failing, so a client can
connect before it triggers the first run. `Last-Event-ID` counts lines of the run the stream
follows: pass `run_id` when resuming if the task may have been re-run meanwhile.

The dashboard's task page uses one stream, `/ui/tasks/<id>/stream?run_id=&after=`: the run it
shows, as HTML fragments, then `event: run` once the task has another run, on which the page
loads its view again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Generator
from typing import Protocol
from uuid import UUID

from jinja2 import TemplateError
from markupsafe import escape
from quart import Quart, render_template_string

from taskdash.core.models import Run, RunStatus
from taskdash.logs.hub import LogEvent, LogHub, Subscription, SubscriptionDropped
from taskdash.logs.store import LogStore
from taskdash.operations.runs import find_run, latest_run_ids
from taskdash.operations.tasks import find_task, task_exists
from taskdash.web.views import lines_html

log = logging.getLogger(__name__)

KEEPALIVE = ": keep-alive\n\n"
REPLAY_CHUNK_CHARS = 64 * 1024
LINE_BREAK = re.compile(r"\r\n|\r|\n")
BADGE_SOURCE = '{% from "_partials.html" import status_badge %}{{ status_badge(status) }}'
STATUS_RANK = {RunStatus.QUEUED: 0, RunStatus.RUNNING: 1}
TERMINAL_RANK = 2
# A run another replica supervises: how often its file and its status are looked at.
FOREIGN_POLL_SECONDS = 0.1
FOREIGN_STATUS_SECONDS = 1.0


def sse_event(event: str, data: str, event_id: int | None = None) -> str:
    """One SSE event; a line break inside `data` becomes a further `data:` line."""
    fields = [f"event: {event}"]
    if event_id is not None:
        fields.append(f"id: {event_id}")
    fields.extend(f"data: {part}" for part in LINE_BREAK.split(data))
    return "\n".join(fields) + "\n\n"


def status_rank(status: str) -> int:
    return STATUS_RANK.get(RunStatus(status), TERMINAL_RANK)


# rendering: the API sends raw text and JSON, the dashboard HTML fragments ----------------------


Lines = list[tuple[int, str]]


class Renderer(Protocol):
    def lines(self, batch: Lines) -> str:
        """Consecutive log lines (number, text) as SSE text."""
        ...

    async def status(self, run_id: UUID, status: RunStatus) -> str: ...

    async def end(self, run: Run) -> str: ...


class JsonRenderer:
    """API clients: one `line` event per line, its number as the id."""

    def lines(self, batch: Lines) -> str:
        return "".join(sse_event("line", text, number) for number, text in batch)

    async def status(self, run_id: UUID, status: RunStatus) -> str:
        return sse_event("status", json.dumps({"run_id": str(run_id), "status": status.value}))

    async def end(self, run: Run) -> str:
        body = {"run_id": str(run.id), "status": run.status.value, "exit_code": run.exit_code}
        return sse_event("end", json.dumps(body))


class Badges:
    """The `status_badge` macro of templates/_partials.html, rendered outside the request."""

    def __init__(self, app: Quart) -> None:
        self.app = app

    async def render(self, status: RunStatus) -> str:
        async with self.app.app_context():
            try:
                return await render_template_string(BADGE_SOURCE, status=status)
            except TemplateError:
                log.exception("cannot render the status badge; sending the bare status")
                return str(escape(status.value))


class HtmlRenderer:
    """The dashboard: a burst of lines is one `line` event (its id the last number), so a
    browser swaps once per burst rather than once per line (10,000 lines a second froze it)."""

    def __init__(self, badges: Badges) -> None:
        self.badges = badges

    def lines(self, batch: Lines) -> str:
        if not batch:
            return ""
        return sse_event("line", str(lines_html(batch)), batch[-1][0])

    async def status(self, run_id: UUID, status: RunStatus) -> str:
        return sse_event("status", await self.badges.render(status))

    async def end(self, run: Run) -> str:
        return sse_event("end", await self.badges.render(run.status))


# following one run ----------------------------------------------------------------------------


async def replay(
    logs: LogStore, run_id: UUID, after: int, render: Renderer
) -> AsyncIterator[tuple[int, str]]:
    """Stored lines after `after`, rendered, in chunks: (last number in chunk, chunk). Each
    chunk is read and rendered in a worker thread: a 10 MiB backlog never holds the loop."""
    chunks = replay_chunks(logs, run_id, after, render)
    try:
        while (item := await asyncio.to_thread(next, chunks, None)) is not None:
            yield item
    finally:
        chunks.close()


def replay_chunks(
    logs: LogStore, run_id: UUID, after: int, render: Renderer
) -> Generator[tuple[int, str], None, None]:
    batch: Lines = []
    size = 0
    with contextlib.closing(logs.read_lines(run_id, after=after)) as lines:
        for number, text in lines:
            batch.append((number, text))
            size += len(text)
            if size >= REPLAY_CHUNK_CHARS:
                yield number, render.lines(batch)
                batch, size = [], 0
    if batch:
        yield batch[-1][0], render.lines(batch)


def take_ready(subscription: Subscription, first: LogEvent) -> list[LogEvent]:
    """`first` and whatever else is already queued, so a burst goes out as one write."""
    events = [first]
    while not subscription.queue.empty():
        events.append(subscription.queue.get_nowait())
    return events


def elsewhere(run: Run, replica: str) -> bool:
    """Another replica supervises the run: its lines reach this process only through the
    shared log file, not the hub."""
    return run.owner is not None and run.owner != replica and not run.status.is_terminal


class RunFollower:
    """Streams one run: current status, stored lines after `after`, live lines, then end.

    A run that another replica supervises is followed from its log file instead of the hub:
    new complete lines are read every FOREIGN_POLL_SECONDS from where the last read ended, and
    its status every FOREIGN_STATUS_SECONDS. Line numbers are the file's either way, so the
    stream stays gap-free and resumable, also when the run moves to this replica.
    """

    def __init__(
        self,
        logs: LogStore,
        run_id: UUID,
        after: int,
        render: Renderer,
        keepalive: float,
        replica: str,
    ) -> None:
        self.logs = logs
        self.hub = logs.hub
        self.run_id = run_id
        self.after = after
        self.render = render
        self.keepalive = keepalive
        self.replica = replica
        self.rank = -1
        # Set once `end` went out (not when the follower was dropped or the run deleted).
        self.ended = False
        # Set once the stream has nothing more to send.
        self.done = False
        self.foreign = False
        # Where reading the file goes on: (lines read, byte offset after them).
        self._cursor: tuple[int, int] | None = None

    async def stream(self) -> AsyncIterator[str]:
        with self.hub.subscribe(self.run_id) as subscription:
            run = await find_run(self.run_id)
            if run is None:
                return
            if run.status.is_terminal:
                async for chunk in self.finish(run):
                    yield chunk
                return
            self.foreign = elsewhere(run, self.replica)
            yield await self.status(run.status)
            async for chunk in self.replay():
                yield chunk
            follow = self.follow_file(subscription) if self.foreign else self.follow(subscription)
            async for chunk in follow:
                yield chunk

    async def replay(self) -> AsyncIterator[str]:
        async for last, chunk in replay(self.logs, self.run_id, self.after, self.render):
            self.after = last
            yield chunk

    async def follow(self, subscription: Subscription) -> AsyncIterator[str]:
        while True:
            try:
                async with asyncio.timeout(self.keepalive):
                    first = await subscription.get()
            except TimeoutError:
                run = await find_run(self.run_id)
                if run is None or run.status.is_terminal:
                    # A safety net: the end event was missed, or the run was deleted.
                    async for chunk in self.finish(run):
                        yield chunk
                    return
                yield KEEPALIVE
                continue
            except SubscriptionDropped:
                why = "the server is stopping" if self.hub.closed else "too far behind"
                yield f": dropped ({why}): reconnect with Last-Event-ID\n\n"
                return
            async for chunk in self.deliver(subscription, first):
                yield chunk
            if self.done:
                return

    async def deliver(self, subscription: Subscription, first: LogEvent) -> AsyncIterator[str]:
        """`first` and the events ready after it, rendered; when the run ended among them, the
        rest of its log and `end` (then `done` is set)."""
        out, ended = await self.render_events(take_ready(subscription, first))
        if out:
            yield out
        if ended:
            self.done = True
            async for chunk in self.finish(await find_run(self.run_id)):
                yield chunk

    async def follow_file(self, subscription: Subscription) -> AsyncIterator[str]:
        """Follow a run another replica supervises, until it ends or comes to this replica
        (then its lines arrive through the hub again)."""
        loop = asyncio.get_running_loop()
        checked = quiet = loop.time()
        while True:
            try:
                async with asyncio.timeout(FOREIGN_POLL_SECONDS):
                    first = await subscription.get()
            except TimeoutError:
                first = None
            except SubscriptionDropped:
                yield ": dropped (the server is stopping): reconnect with Last-Event-ID\n\n"
                return
            if first is not None:  # a status change announced here (a stop, a takeover)
                async for chunk in self.deliver(subscription, first):
                    yield chunk
                if self.done:
                    return
            batch = await asyncio.to_thread(self.read_file)
            if batch:
                quiet = loop.time()
                yield self.render.lines(batch)
            if loop.time() - checked >= FOREIGN_STATUS_SECONDS:
                checked = loop.time()
                run = await find_run(self.run_id)
                if run is None or run.status.is_terminal:
                    async for chunk in self.finish(run):
                        yield chunk
                    return
                if out := await self.status(run.status):
                    yield out
                if not elsewhere(run, self.replica):
                    async for chunk in self.follow(subscription):
                        yield chunk
                    return
            if loop.time() - quiet >= self.keepalive:
                quiet = loop.time()
                yield KEEPALIVE

    def read_file(self) -> Lines:
        """New complete lines of the log file after those already sent (in a worker thread)."""
        if self._cursor is None:
            self._cursor = (self.after, self.logs.offset_after(self.run_id, self.after))
        read, offset = self._cursor
        lines, offset = self.logs.read_new(self.run_id, read, offset)
        if lines:
            self._cursor = (lines[-1][0], offset)
        fresh = [(number, text) for number, text in lines if number > self.after]
        if fresh:
            self.after = fresh[-1][0]
        return fresh

    async def render_events(self, events: list[LogEvent]) -> tuple[str, bool]:
        """The rendered lines and status changes, and whether the run ended among them."""
        parts: list[str] = []
        batch: Lines = []
        for event in events:
            if event.kind == "line":
                if event.number > self.after:
                    batch.append((event.number, event.text))
                    self.after = event.number
                continue
            parts.append(self.render.lines(batch))
            batch = []
            if event.kind == "status":
                parts.append(await self.status(RunStatus(event.status)))
            elif event.kind == "end":
                return "".join(parts), True
        parts.append(self.render.lines(batch))
        return "".join(parts), False

    async def status(self, status: RunStatus) -> str:
        """The status event, or nothing when it is not newer than the one already sent."""
        rank = status_rank(status)
        if rank <= self.rank:
            return ""
        self.rank = rank
        return await self.render.status(self.run_id, status)

    async def finish(self, run: Run | None) -> AsyncIterator[str]:
        """Whatever stored lines were not sent yet, then `end` with the final status."""
        async for chunk in self.replay():
            yield chunk
        if run is not None:
            yield await self.render.end(run)
            self.ended = True


async def wait_for_run(
    hub: LogHub, task_id: UUID, keepalive: float, other_than: UUID | None = None
) -> AsyncIterator[str | UUID]:
    """Keep-alives until the task has a run (other than `other_than`), then that run's id;
    nothing when the task is deleted."""
    with hub.subscribe(None) as subscription:
        task = await find_task(task_id)
        if task is None:
            return
        if task.last_run_id is not None and task.last_run_id != other_than:
            yield task.last_run_id
            return
        if other_than is None:
            yield ": this task has no run yet: waiting for its next run\n\n"
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    event = await subscription.get()
            except TimeoutError:
                if not await task_exists(task_id):
                    return
                yield KEEPALIVE
                continue
            except SubscriptionDropped:
                return
            if event.task_id == task_id and event.run_id != other_than:
                yield event.run_id
                return


async def task_log_stream(
    logs: LogStore,
    task_id: UUID,
    run_id: UUID | None,
    after: int,
    keepalive: float,
    replica: str,
) -> AsyncIterator[str]:
    if run_id is None:
        async for item in wait_for_run(logs.hub, task_id, keepalive):
            if isinstance(item, UUID):
                run_id = item
            else:
                yield item
        if run_id is None:
            return
    follower = RunFollower(logs, run_id, after, JsonRenderer(), keepalive, replica)
    async for chunk in follower.stream():
        yield chunk


async def task_view_stream(
    logs: LogStore,
    task_id: UUID,
    shown: UUID | None,
    after: int,
    keepalive: float,
    badges: Badges,
    replica: str,
) -> AsyncIterator[str]:
    """The task page: the shown run's new lines, status and end; then, once the task has
    another run (started by its schedule, the API or another tab), `run` with its id."""
    if shown is not None:
        follower = RunFollower(logs, shown, after, HtmlRenderer(badges), keepalive, replica)
        async for chunk in follower.stream():
            yield chunk
        if not follower.ended:
            return  # dropped: the browser reconnects with Last-Event-ID
    async for item in wait_for_run(logs.hub, task_id, keepalive, other_than=shown):
        yield sse_event("run", str(item)) if isinstance(item, UUID) else item


# the task list's live badges --------------------------------------------------------------------


async def task_badges(events: list[LogEvent], badges: Badges) -> str:
    """One `task-<id>` event per task whose latest run changed; an older run still finishing
    must not repaint its task's badge. One query for the whole burst."""
    newest: dict[tuple[UUID, UUID], LogEvent] = {}
    for event in events:
        if event.task_id is not None:
            newest[(event.task_id, event.run_id)] = event
    if not newest:
        return ""
    latest = await latest_run_ids(list({task_id for task_id, _ in newest}))
    rendered: dict[str, str] = {}
    parts = []
    for (task_id, run_id), event in newest.items():
        if latest.get(task_id) != run_id:
            continue
        if event.status not in rendered:
            rendered[event.status] = await badges.render(RunStatus(event.status))
        parts.append(sse_event(f"task-{task_id}", rendered[event.status]))
    return "".join(parts)


async def status_feed(hub: LogHub, badges: Badges, keepalive: float) -> AsyncIterator[str]:
    """Badge changes for the task list. A burst too large to buffer (a schedule firing
    thousands of runs) drops the subscription: the feed subscribes again, then `refresh` asks
    the page to reload its table, so no change falls between the two."""
    subscription = hub.subscribe(None)
    try:
        yield ": connected\n\n"
        while True:
            async for chunk in badge_events(subscription, badges, keepalive):
                yield chunk
            if hub.closed:
                return
            subscription.close()
            subscription = hub.subscribe(None)
            yield sse_event("refresh", "")
    finally:
        subscription.close()


async def badge_events(
    subscription: Subscription, badges: Badges, keepalive: float
) -> AsyncIterator[str]:
    """Until the subscription is dropped."""
    while True:
        try:
            async with asyncio.timeout(keepalive):
                first = await subscription.get()
        except TimeoutError:
            yield KEEPALIVE
            continue
        except SubscriptionDropped:
            return
        out = await task_badges(take_ready(subscription, first), badges)
        if out:
            yield out
