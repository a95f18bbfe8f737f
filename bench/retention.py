"""Retention: how fast old runs and their logs are pruned, and how long another request waits.

Fills a real SQLite file with `--tasks` tasks of `--runs` runs each (100,000 by default), all
queued 100 days ago and finished, each with a small log file, plus one recent run per task
(its latest, which is kept), then runs one retention pass (TASKDASH_RETENTION_DAYS=30) and
prints rows, files and bytes pruned per second, the longest delete statement (each is its own
transaction), and what a concurrent request saw: a one-row indexed read issued back to back
during the pass, its latency p50 / p99 / max.

    .venv/bin/python -m bench.retention [--tasks 1000] [--runs 100] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from taskdash.core.config import load_settings
from taskdash.core.db import close_database, open_database
from taskdash.core.models import Run, RunStatus, ScriptType, Task
from taskdash.logs.hub import LogHub
from taskdash.logs.store import LogStore
from taskdash.scheduling.retention import Retention

LOG_LINE = b"[bench] a line of output from an old run, long enough to look like one\n"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def fill(logs: LogStore, tasks: int, runs: int, now: datetime) -> Task:
    made = [
        Task(name=f"bench {i}", script_type=ScriptType.SHELL, script=b"true\n")
        for i in range(tasks)
    ]
    await Task.bulk_create(made, batch_size=1000)
    made = list(await Task.all())
    rows: list[Run] = []
    for task in made:
        for i in range(runs):
            queued = now - timedelta(days=100, minutes=i)
            rows.append(
                Run(id=uuid.uuid4(), task_id=task.id, status=RunStatus.SUCCEEDED, queued_at=queued)
            )
        latest = Run(id=uuid.uuid4(), task_id=task.id, status=RunStatus.SUCCEEDED, queued_at=now)
        rows.append(latest)
        task.last_run_id = latest.id
    for start in range(0, len(rows), 5000):
        await Run.bulk_create(rows[start : start + 5000], batch_size=1000)
    await Task.bulk_update(made, fields=["last_run_id"], batch_size=1000)
    for run in rows:
        logs.path_for(run.id).write_bytes(LOG_LINE * 3)
    return made[0]


async def probe(task_id: uuid.UUID, stop: asyncio.Event, latencies: list[float]) -> None:
    """Another request: a one-row read by primary key, back to back."""
    while not stop.is_set():
        started = time.perf_counter()
        await Task.filter(id=task_id).exists()
        latencies.append(time.perf_counter() - started)


async def main(tasks: int, runs: int, batch: int) -> None:
    with tempfile.TemporaryDirectory(prefix="taskdash-bench-retention-") as folder:
        settings = load_settings(
            data_dir=Path(folder) / "data",
            retention_days=30,
            keep_runs_per_task=0,
            deps_unused_days=0,
        )
        database = await open_database(settings)
        try:
            logs = LogStore(settings.logs_dir, settings.log_max_bytes, LogHub())
            now = datetime.now(UTC)
            started = time.perf_counter()
            some_task = await fill(logs, tasks, runs, now)
            print(
                f"filled {tasks:,} tasks, {tasks * (runs + 1):,} runs and log files "
                f"in {time.perf_counter() - started:.1f} s"
            )
            retention = Retention(settings, logs, batch=batch)
            stop, latencies = asyncio.Event(), list[float]()
            other = asyncio.create_task(probe(some_task.id, stop, latencies))
            done = await retention.run_once(now)
            stop.set()
            await other
            left = await Run.all().count()
        finally:
            await close_database(database)
    pruned, seconds = done.pruned, done.seconds
    print(f"batch {batch}: pruned {pruned.runs:,} runs, {pruned.log_files:,} log files, "
          f"{pruned.log_bytes / 1e6:.1f} MB in {seconds:.2f} s ({left:,} runs left)")  # fmt: skip
    print(
        f"  rate: {pruned.runs / seconds:,.0f} rows/s, {pruned.log_files / seconds:,.0f} files/s, "
        f"{pruned.log_bytes / seconds / 1e6:.2f} MB/s"
    )
    print(
        f"  {done.statements} delete statements of at most {done.largest_statement} rows, "
        f"the longest {done.longest_statement_seconds * 1000:.1f} ms"
    )
    print(
        f"  a concurrent one-row read ({len(latencies):,} of them during the pass): "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100, help="old runs per task")
    parser.add_argument("--batch", type=int, default=500, help="rows per delete statement")
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.runs, args.batch))
