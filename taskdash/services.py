"""The long-lived objects of one app, opened in order and closed in reverse by its lifecycle."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.context import TortoiseContext

from taskdash.core.config import Settings
from taskdash.core.crypto import Keys
from taskdash.core.db import close_database, open_database
from taskdash.core.errors import TaskdashError
from taskdash.core.loop_probe import LoopProbe
from taskdash.core.ratelimit import SlidingWindow
from taskdash.engine.build_spec import DEPS_REPOSITORY, requirements_key
from taskdash.engine.docker import DockerEngine, TlsFiles
from taskdash.engine.runs import RunManager
from taskdash.engine.spec import LABEL_PREFIX
from taskdash.engine.swarm import SwarmEngine
from taskdash.logs.hub import LogHub
from taskdash.logs.store import LogStore
from taskdash.scheduling.retention import DepsImage, Retention
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
    retention: Retention


async def open_services(
    settings: Settings, keys: Keys, stack: contextlib.AsyncExitStack
) -> Services:
    """Database -> engine client -> runs (reconciled) -> scheduler; each one's close is pushed
    on `stack`, so closing it stops them in reverse order, each even if another fails."""
    database = await open_database(settings)
    stack.push_async_callback(close_database, database)
    engine = open_engine(settings)
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
    retention = Retention(settings, logs, EngineDepsImages(engine, settings))
    await retention.open()
    stack.push_async_callback(retention.close)
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
        retention=retention,
    )


def open_engine(settings: Settings) -> DockerEngine:
    """The engine client, for the executor TASKDASH_EXECUTOR names: runs as containers on it
    (`docker`), or as services on the swarm it manages (`swarm`)."""
    tls = None
    if settings.docker_tls_ca and settings.docker_tls_cert and settings.docker_tls_key:
        tls = TlsFiles(settings.docker_tls_ca, settings.docker_tls_cert, settings.docker_tls_key)
    if settings.executor == "swarm":
        return SwarmEngine(settings, settings.docker_url, tls=tls)
    return DockerEngine(settings.docker_url, tls=tls)


async def report_images(engine: DockerEngine, settings: Settings) -> None:
    """Say at start-up which default images are missing, so the first run's error is no surprise."""
    try:
        await engine.ping()
    except TaskdashError as exc:
        log.warning("%s: runs will fail until it answers (make setup starts it)", exc.message)
        return
    if isinstance(engine, SwarmEngine):
        try:
            await engine.runs.node_id()
        except TaskdashError as exc:
            log.warning("%s: runs will end as error until it is", exc.message)
    for image in (settings.python_image, settings.shell_image):
        if await engine.image_info(image) is None:
            log.warning("image %s is missing: run `make images` to build it", image)


class EngineDepsImages:
    """This installation's requirements images on the engine (those its builds labelled with
    its instance), as retention asks for them."""

    def __init__(self, engine: DockerEngine, settings: Settings) -> None:
        self.engine = engine
        self.labels = {f"{LABEL_PREFIX}instance": settings.instance}

    async def inventory(self) -> list[DepsImage]:
        found = await self.engine.list_images(DEPS_REPOSITORY, self.labels)
        # Each is its base image plus a commit: its own bytes are the difference.
        parent_sizes: dict[str, int] = {}
        for parent in {str(summary.get("ParentId") or "") for summary in found} - {""}:
            if (info := await self.engine.image_info(parent)) is not None:
                parent_sizes[parent] = int(info.get("Size") or 0)
        return [
            DepsImage(
                tag=tag,
                image_id=str(summary["Id"]),
                created_at=datetime.fromtimestamp(int(summary["Created"]), UTC),
                size=int(summary["Size"]),
                own_size=int(summary["Size"]) - parent_sizes.get(str(summary.get("ParentId")), 0),
            )
            for summary in found
            for tag in summary.get("RepoTags") or []
            if tag.startswith(f"{DEPS_REPOSITORY}:")
        ]

    async def base_id(self, image: str) -> str | None:
        info = await self.engine.image_info(image)
        return str(info["Id"]) if info is not None else None

    def tag_for(self, base_id: str, requirements: str) -> str:
        return f"{DEPS_REPOSITORY}:{requirements_key(base_id, requirements)}"

    async def remove(self, tag: str) -> bool:
        return await self.engine.remove_image(tag)
