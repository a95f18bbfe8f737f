"""Scheduler lag: from a slot's due instant to its run being recorded, and to its container start.

1. Decision lag (1 / 1,000 / 10,000 schedules, all due at the same instant) on a real SQLite
   file. For each schedule, the time from the due instant until its outcome is final (fire,
   skip, wait: the busy check is done), until its slot and run are committed together, and
   until the run is handed to the launcher. The launcher only notes the time, so this is the
   scheduler's own work. "planned ahead" is the real loop (`Scheduler.start()`), which reads
   and decides the next instant while it sleeps; "no plan" is one `fire_due` call at the due
   instant with nothing prepared (as when a schedule changed in the last seconds).
   By default the schedules use 240 distinct (expression, zone) pairs; `--distinct` gives each
   schedule its own expression (the worst case for the cron maths).
2. Container-start lag (real RunManager + Docker, concurrency limit honoured): the time from
   the due instant to the container's State.StartedAt, for 1 schedule and for `--containers`
   schedules due together (they queue behind TASKDASH_MAX_CONCURRENT_RUNS). For 1,000 and
   10,000 schedules the start lag is set by the queue, not the scheduler: it is extrapolated
   from the measured container throughput and printed as such.

    .venv/bin/python -m bench.scheduler_lag [--sizes 1,1000,10000] [--containers 12] [--distinct]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from taskdash.core.clock import utcnow
from taskdash.core.config import Settings, load_settings
from taskdash.core.crypto import load_keys
from taskdash.core.db import close_database, open_database
from taskdash.core.models import (
    ACTIVE_STATUSES,
    Run,
    Schedule,
    ScriptType,
    Task,
)
from taskdash.engine.docker import DockerEngine
from taskdash.engine.runs import RunManager
from taskdash.logs.hub import LogHub
from taskdash.logs.store import LogStore
from taskdash.scheduling.decide import Decision
from taskdash.scheduling.plan import DuePlan
from taskdash.scheduling.scheduler import Scheduler

MIXED_EXPRESSIONS = [f"{m} * * * *" for m in range(0, 60, 5)] + [
    "* * * * *",
    "*/2 * * * *",
    "*/3 * * * *",
    "*/5 * * * *",
    "0 */2 * * *",
    "30 9 * * 1-5",
    "@hourly",
    "@daily",
]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
LEAD = timedelta(seconds=3)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def expression_for(index: int, distinct: bool) -> tuple[str, str]:
    if distinct:  # 10,080 different expressions: minute, hour and weekday
        return f"{index % 60} {index // 60 % 24} * * {index // 1440 % 7}", "UTC"
    pairs = [(e, z) for e in MIXED_EXPRESSIONS[:48] for z in ZONES]
    return pairs[index % len(pairs)]


async def add_schedules(count: int, due: datetime, distinct: bool) -> None:
    tasks = [
        Task(name=f"bench {i}", script_type=ScriptType.SHELL, script=b"true\n")
        for i in range(count)
    ]
    await Task.bulk_create(tasks, batch_size=1000)
    schedules = []
    for i, task in enumerate(tasks):
        expression, zone = expression_for(i, distinct)
        schedules.append(
            Schedule(task_id=task.id, cron_expression=expression, timezone=zone, next_run_at=due)
        )
    await Schedule.bulk_create(schedules, batch_size=1000)


class TimingLauncher:
    def __init__(self, settings: Settings, hub: LogHub, expected: int) -> None:
        self.settings = settings
        self.hub = hub
        self.launched_at: dict[UUID, datetime] = {}
        self.expected = expected
        self.done = asyncio.Event()

    def execute(self, run_id: UUID, task_id: UUID, *, script: bytes | None = None) -> None:
        self.launched_at[run_id] = datetime.now(UTC)
        if len(self.launched_at) >= self.expected:
            self.done.set()


class MeasuredScheduler(Scheduler):
    """Keeps what each real `fire_due` step decided, with its commit time."""

    def __init__(self, settings: Settings, launcher: TimingLauncher) -> None:
        super().__init__(settings, launcher, launcher.hub)
        self.decisions: list[Decision] = []
        self.all_decided = asyncio.Event()
        self.expected = launcher.expected
        self.plan_seconds: dict[datetime, float] = {}

    async def plan(self, at: datetime) -> DuePlan:
        started = time.perf_counter()
        plan = await super().plan(at)
        self.plan_seconds[at] = time.perf_counter() - started
        return plan

    async def fire_due(self, now: datetime, plan: DuePlan | None = None) -> list[Decision]:
        decided = await super().fire_due(now, plan)
        self.decisions += decided
        if len(self.decisions) >= self.expected:
            self.all_decided.set()
        return decided


@dataclass
class Lags:
    """Seconds from the due instant, one per schedule."""

    decided: list[float]
    committed: list[float]
    handed: list[float]
    plan_seconds: float


async def decision_lags(count: int, distinct: bool, ahead: bool) -> Lags:
    """Per schedule: due -> outcome final, -> slot and run committed, -> run handed over.

    `ahead`: the real loop, which plans the instant while it sleeps. Otherwise one
    `fire_due` call at the due instant with no plan (as right after a schedule changed).
    """
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(data_dir=Path(folder) / "data")
        database = await open_database(settings)
        try:
            # Time to plan before the due instant, as the loop has between two minutes (the
            # plan of 10,000 distinct expressions takes several seconds here).
            lead = LEAD + timedelta(seconds=count / (1000 if distinct else 4000))
            due = (utcnow() + lead).replace(microsecond=0)
            await add_schedules(count, due, distinct)
            hub = LogHub()
            launcher = TimingLauncher(settings, hub, count)
            scheduler = MeasuredScheduler(settings, launcher)
            if ahead:
                await scheduler.open()
                try:
                    await asyncio.wait_for(scheduler.all_decided.wait(), 120)
                finally:
                    await scheduler.close()
            else:
                scheduler.watching_since = utcnow()
                await asyncio.sleep((due - utcnow()).total_seconds())
                await scheduler.fire_due(utcnow())
            return Lags(
                decided=since(due, [d.decided_at for d in scheduler.decisions]),
                committed=since(due, [d.recorded_at for d in scheduler.decisions]),
                handed=since(due, list(launcher.launched_at.values())),
                plan_seconds=max(
                    (t for at, t in scheduler.plan_seconds.items() if at >= due), default=0.0
                ),
            )
        finally:
            await close_database(database)


def since(due: datetime, times: list[datetime | None]) -> list[float]:
    return [(at - due).total_seconds() for at in times if at is not None]


def started_at(run: Run) -> datetime:
    text = ((run.docker_info or {}).get("State") or {}).get("StartedAt", "")
    head, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{head}.{fraction}+00:00")


async def container_lags(count: int) -> tuple[list[float], float, int]:
    """Start lags of `count` real containers due together, their throughput, the limit."""
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(data_dir=Path(folder) / "data", instance_id=f"bench-{time.time()}")
        database = await open_database(settings)
        engine = DockerEngine(settings.docker_url)
        await engine.open()
        hub = LogHub()
        logs = LogStore(settings.logs_dir, settings.log_max_bytes, hub)
        runs = RunManager(settings, engine, logs, load_keys(settings))
        scheduler = Scheduler(settings, runs, hub)
        try:
            await runs.open()
            due = (utcnow() + LEAD).replace(microsecond=0)
            await add_schedules(count, due, distinct=False)
            await scheduler.open()
            await all_finished(due, count)
            finished = await Run.filter(scheduled_for=due).order_by("started_at")
            starts = [started_at(run) for run in finished]
            lags = [(start - due).total_seconds() for start in starts]
            spread = (max(starts) - min(starts)).total_seconds()
            throughput = (count - 1) / spread if count > 1 and spread > 0 else 0.0
            return lags, throughput, settings.max_concurrent_runs
        finally:
            await scheduler.close()
            await runs.close()
            await engine.close()
            await close_database(database)


async def all_finished(due: datetime, count: int, within: float = 600) -> None:
    for _ in range(int(within / 0.2)):
        recorded = await Run.filter(scheduled_for=due).count()
        if recorded >= count and not await Run.filter(status__in=ACTIVE_STATUSES).exists():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{count} scheduled runs did not finish in {within} s")


def line(label: str, lags: list[float]) -> str:
    return (
        f"{label:<50} p50 {percentile(lags, 0.5) * 1000:8.1f} ms   "
        f"p99 {percentile(lags, 0.99) * 1000:8.1f} ms   max {max(lags) * 1000:8.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,1000,10000")
    parser.add_argument("--containers", type=int, default=12)
    parser.add_argument("--distinct", action="store_true")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    kind = "distinct expressions" if args.distinct else "240 expression/zone pairs"
    print(f"decision lag: due instant -> outcome final / slot and run committed ({kind})")
    for size in sizes:
        for ahead in (True, False):
            lags = await decision_lags(size, args.distinct, ahead)
            how = "planned ahead" if ahead else "no plan"
            print(f"  {size:>6} schedules, {how}: planning took {lags.plan_seconds:.2f} s")
            print(line(f"  {size:>6} schedules, {how}, decided", lags.decided))
            print(line(f"  {size:>6} schedules, {how}, committed", lags.committed))
            print(line(f"  {size:>6} schedules, {how}, handed over", lags.handed))
    print("container-start lag: due instant -> container State.StartedAt (real Docker)")
    single, _, limit = await container_lags(1)
    print(line("       1 schedule", single))
    many, throughput, limit = await container_lags(args.containers)
    print(line(f"  {args.containers:>6} schedules (limit {limit})", many))
    print(f"  queue drains at {throughput:.1f} containers/s with {limit} concurrent runs")
    for size in (1000, 10000):
        if throughput:
            p50, p99 = 0.5 * size / throughput, 0.99 * size / throughput
            print(
                f"  {size:>6} schedules: extrapolated p50 {p50:7.0f} s   p99 {p99:7.0f} s (queue)"
            )
    print(f"measured at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    asyncio.run(main())
