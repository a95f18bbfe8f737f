"""Whether the database and the Docker engine answer."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise import connections

from taskdash.core.errors import TaskdashError
from taskdash.services import Services


@dataclass(frozen=True)
class Health:
    database: str
    docker: str
    healthy: bool


async def check_health(services: Services) -> Health:
    database, docker, healthy = "ok", "ok", True
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as exc:  # any failure means "not healthy", with its reason
        database, healthy = f"unavailable: {exc}", False
    try:
        docker = f"ok (engine {await services.engine.ping()})"
    except TaskdashError as exc:
        docker, healthy = exc.message, False
    return Health(database, docker, healthy)
