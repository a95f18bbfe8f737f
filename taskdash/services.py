"""The long-lived objects of one app, created and closed by its lifecycle."""

from __future__ import annotations

from dataclasses import dataclass

from quart import current_app
from tortoise.context import TortoiseContext

from taskdash.core.config import Settings
from taskdash.engine.docker import DockerRunner
from taskdash.engine.runs import RunManager
from taskdash.logs.hub import LogHub
from taskdash.scheduling.scheduler import Scheduler


@dataclass
class Services:
    settings: Settings
    database: TortoiseContext
    runner: DockerRunner
    hub: LogHub
    runs: RunManager
    scheduler: Scheduler | None = None


def services() -> Services:
    found: Services = current_app.extensions["taskdash"]
    return found
