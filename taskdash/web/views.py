"""What the dashboard's templates receive: plain shapes built from a task and its runs."""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from markupsafe import Markup

from taskdash.core.models import ACTIVE_STATUSES, Run, ScriptType, Task
from taskdash.logs.ansi import ansi_to_html
from taskdash.logs.store import LogStore
from taskdash.operations.runs import ContainerInfo, container_info, latest_run, list_runs
from taskdash.operations.schedules import schedule_view
from taskdash.services import Services
from taskdash.web.filters import format_duration, format_time
from taskdash.web.schemas import schedule_json

# The pages show the tail of a log (the download has all of it): enough to read, few enough
# that a browser stays quick with a 10 MiB log (static/app.js caps live lines the same way).
TASK_LOG_LINES = 2_000
RUN_LOG_LINES = 10_000
HISTORY_RUNS = 30
NEVER = "0001-01-01"  # Docker's zero time: a container that has not finished


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
    env: str = ""
    upload: bool = True
    error: str | None = None

    @classmethod
    def of(cls, form: Mapping[str, str], error: str | None = None) -> UploadForm:
        return cls(
            name=form.get("name", ""),
            script_type=form.get("script_type", ScriptType.PYTHON.value),
            script=form.get("script", ""),
            requirements=form.get("requirements", ""),
            env=form.get("env", ""),
            upload=form.get("upload", "true") != "false",
            error=error,
        )


@dataclass(frozen=True)
class LogView:
    run: Run
    # The shown lines as one block of HTML (rendered off the loop), their first and last number.
    html: Markup
    first: int
    last: int
    total: int
    live: bool
    stream_url: str

    @property
    def skipped(self) -> int:
        return self.first - 1 if self.last else self.total

    @property
    def last_number(self) -> int:
        return self.last


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


def lines_html(batch: list[tuple[int, str]]) -> Markup:
    """Numbered log lines as safe HTML: each escaped, its ANSI colours as spans. The pages and
    the dashboard's stream both send lines as this."""
    return Markup(
        "".join(
            f'<div class="line" id="L{number}"><span class="ln">{number}</span>'
            f'<span class="tx">{ansi_to_html(text)}</span></div>'
            for number, text in batch
        )
    )


def read_tail(logs: LogStore, run_id: UUID, limit: int) -> tuple[list[tuple[int, str]], int]:
    """The last `limit` lines and how many lines the log has (in a worker thread)."""
    tail: deque[tuple[int, str]] = deque(maxlen=limit)
    total = 0
    for number, text in logs.read_lines(run_id):
        tail.append((number, text))
        total = number
    return list(tail), total


def tail_view(logs: LogStore, run_id: UUID, limit: int) -> tuple[Markup, int, int, int]:
    tail, total = read_tail(logs, run_id, limit)
    first, last = (tail[0][0], tail[-1][0]) if tail else (0, 0)
    return lines_html(tail), first, last, total


async def log_view(logs: LogStore, task: Task, run: Run | None, limit: int) -> LogView | None:
    if run is None:
        return None
    html, first, last, total = await asyncio.to_thread(tail_view, logs, run.id, limit)
    return LogView(
        run=run,
        html=html,
        first=first,
        last=last,
        total=total,
        live=run.status in ACTIVE_STATUSES,
        # After the lines rendered here: a burst arrives as one event, so the page cannot
        # drop a repeated line on its own.
        stream_url=f"/ui/tasks/{task.id}/runs/{run.id}/stream?after={total}",
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


def docker_context(info: ContainerInfo) -> dict[str, Any]:
    return {
        "docker_source": info.source,
        "docker_facts": docker_facts(info.data),
        "docker_json": json.dumps(info.data, indent=2, sort_keys=True) if info.data else "",
    }


async def task_context(services: Services, task: Task) -> dict[str, Any]:
    """Everything the task page shows."""
    run = await latest_run(task)
    runs, run_count = await list_runs(task, HISTORY_RUNS, 0)
    log = await log_view(services.logs, task, run, TASK_LOG_LINES)
    return {
        "task": task,
        "run": run,
        "active": run is not None and run.status in ACTIVE_STATUSES,
        "log": log,
        "stream_url": task_stream_url(task, log),
        "runs": runs,
        "run_count": run_count,
        "chart": duration_chart(task, runs),
        **docker_context(await container_info(services, run)),
        "script_lines": script_lines(task),
        "schedule": schedule_json(await schedule_view(services, task.id)),
    }


async def run_context(services: Services, task: Task, run: Run) -> dict[str, Any]:
    """Everything a run's page shows."""
    return {
        "task": task,
        "run": run,
        "log": await log_view(services.logs, task, run, RUN_LOG_LINES),
        **docker_context(await container_info(services, run)),
    }
