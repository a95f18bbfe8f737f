"""The long-lived objects of one app, opened in order and closed in reverse by its lifecycle."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from tortoise.context import TortoiseContext

from taskdash.core.config import Settings
from taskdash.core.crypto import Keys
from taskdash.core.db import close_database, open_database
from taskdash.core.errors import TaskdashError
from taskdash.core.loop_probe import LoopProbe
from taskdash.core.ratelimit import SlidingWindow
from taskdash.engine.docker import DockerEngine
from taskdash.engine.runs import RunManager
from taskdash.logs.hub import LogHub
from taskdash.logs.store import LogStore
from taskdash.scheduling.scheduler import Scheduler
from taskdash.scheduling.schedules import ScheduleBook

log = logging.getLogger("taskdash")


@dataclass(frozen=True)
class Services:
    settings: Settings
    database: TortoiseContext
    engine: DockerEngine
    hub: LogHub
    logs: LogStore
    runs: RunManager
    scheduler: Scheduler
    schedules: ScheduleBook
    keys: Keys
    # Failed logins by name and by client; runs started per user or token.
    login_failures: SlidingWindow
    run_starts: SlidingWindow
    loop_probe: LoopProbe


async def open_services(
    settings: Settings, keys: Keys, stack: contextlib.AsyncExitStack
) -> Services:
    """Database -> engine client -> runs (reconciled) -> scheduler; each one's close is pushed
    on `stack`, so closing it stops them in reverse order, each even if another fails."""
    database = await open_database(settings)
    stack.push_async_callback(close_database, database)
    engine = DockerEngine(settings.docker_url)
    await engine.open()
    stack.push_async_callback(engine.close)
    hub = LogHub()
    logs = LogStore(settings.logs_dir, settings.log_max_bytes, hub)
    runs = RunManager(settings, engine, logs, keys)
    await report_images(engine, settings)
    await runs.open()
    stack.push_async_callback(runs.close)
    scheduler = Scheduler(settings, runs, hub)
    await scheduler.open()
    stack.push_async_callback(scheduler.close)
    schedules = ScheduleBook(settings, scheduler.wake)
    probe = LoopProbe()
    await probe.open()
    stack.push_async_callback(probe.close)
    return Services(
        settings,
        database,
        engine,
        hub,
        logs,
        runs,
        scheduler,
        schedules,
        keys,
        login_failures=SlidingWindow(settings.login_max_failures, settings.login_window_seconds),
        run_starts=SlidingWindow(settings.run_rate_per_minute, 60.0),
        loop_probe=probe,
    )


async def report_images(engine: DockerEngine, settings: Settings) -> None:
    """Say at start-up which default images are missing, so the first run's error is no surprise."""
    try:
        await engine.ping()
    except TaskdashError as exc:
        log.warning("%s: runs will fail until it answers (make setup starts it)", exc.message)
        return
    for image in (settings.python_image, settings.shell_image):
        if await engine.image_info(image) is None:
            log.warning("image %s is missing: run `make images` to build it", image)
