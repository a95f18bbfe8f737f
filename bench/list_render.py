"""How fast the dashboard's task list renders with 10,000 tasks in the database.

Fills a fresh SQLite database (in a temporary data dir) with TASKS tasks, each with RUNS_PER_TASK
finished runs and every tenth with a schedule, then asks the real app for `/` (and a later page)
through Quart's test client as a logged-in viewer (so the session check is in every figure), with
its real lifecycle (database, Docker client, scheduler), and
prints p50 / p95 / max in milliseconds. The budget of the issue is 50 ms.

    .venv/bin/python -m bench.list_render [--tasks 10000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from taskdash import create_app
from taskdash.core.clock import utcnow
from taskdash.core.config import load_settings
from taskdash.core.db import close_database, open_database
from taskdash.core.models import Role, Run, RunStatus, Schedule, ScriptType, Task, Trigger
from taskdash.operations.accounts import add_user

RUNS_PER_TASK = 3
USER, PASSWORD = "bench", "bench password"
BUDGET_MS = 50.0
FINISHED = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.TIMED_OUT]


async def fill(data_dir: Path, count: int) -> None:
    settings = load_settings(data_dir=data_dir)
    database = await open_database(settings)
    now = utcnow()
    tasks, runs, schedules = [], [], []
    for index in range(count):
        created = now - timedelta(minutes=count - index)
        task = Task(
            id=uuid.uuid4(),
            name=f"task {index:05d}",
            script_type=random.choice(list(ScriptType)),
            script=b"print('hello')\n",
            script_filename="job.py",
            created_at=created,
            updated_at=created,
        )
        for number in range(RUNS_PER_TASK):
            started = created + timedelta(seconds=10 * number)
            run = Run(
                id=uuid.uuid4(),
                task_id=task.id,
                status=random.choice(FINISHED),
                trigger=Trigger.API,
                queued_at=started,
                started_at=started,
                finished_at=started + timedelta(seconds=random.uniform(0.2, 90)),
                exit_code=0,
                image="taskdash/python:bookworm",
            )
            runs.append(run)
            task.last_run_id = run.id
        tasks.append(task)
        if index % 10 == 0:
            schedules.append(
                Schedule(task_id=task.id, cron_expression="*/5 * * * *", next_run_at=now)
            )
    await Task.bulk_create(tasks, batch_size=1000)
    await Run.bulk_create(runs, batch_size=1000)
    await Schedule.bulk_create(schedules, batch_size=1000)
    await add_user(USER, PASSWORD, Role.VIEWER)
    await close_database(database)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(data_dir: Path, path: str, requests: int) -> list[float]:
    app = create_app(load_settings(data_dir=data_dir))
    timings: list[float] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        login = await client.post("/login", form={"name": USER, "password": PASSWORD})
        assert login.status_code == 303, "the bench measures a logged-in person's page"
        for attempt in range(requests + 10):
            start = time.perf_counter()
            response = await client.get(path)
            elapsed = (time.perf_counter() - start) * 1000
            body = await response.get_data(as_text=True)
            assert response.status_code == 200, body[:500]
            assert body.count("data-task-id=") == 50, "expected a full page of 50 rows"
            if attempt >= 10:  # the first requests warm the template cache
                timings.append(elapsed)
    return timings


def report(path: str, timings: list[float]) -> bool:
    p50, p95 = statistics.median(timings), percentile(timings, 0.95)
    verdict = "OK" if p95 < BUDGET_MS else "OVER BUDGET"
    print(
        f"GET {path:<12} n={len(timings)}  p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  "
        f"max {max(timings):6.2f} ms  [{verdict}: budget {BUDGET_MS:.0f} ms]"
    )
    return p95 < BUDGET_MS


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskdash-bench-") as folder:
        data_dir = Path(folder) / "data"
        start = time.perf_counter()
        await fill(data_dir, args.tasks)
        print(
            f"filled {args.tasks} tasks, {args.tasks * RUNS_PER_TASK} runs in "
            f"{time.perf_counter() - start:.1f} s"
        )
        ok = True
        for path in ("/", "/?page=100"):
            ok = report(path, await measure(data_dir, path, args.requests)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
