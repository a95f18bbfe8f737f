"""Whether the database and the Docker engine answer. The reasons go to the server log, not
to whoever asks: /healthz is public."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tortoise import connections

from taskdash.core.errors import TaskdashError
from taskdash.core.loop_probe import LagStats
from taskdash.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    database: str
    docker: str
    healthy: bool
    loop_lag: LagStats


async def check_health(services: Services) -> Health:
    database, docker, healthy = "ok", "ok", True
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:  # any failure means "not healthy"
        log.exception("health: the database does not answer")
        database, healthy = "unavailable: the database does not answer (see the server log)", False
    try:
        docker = f"ok (engine {await services.engine.ping()})"
    except TaskdashError as exc:
        log.warning("health: %s", exc.message)
        docker, healthy = "unavailable: the Docker engine does not answer", False
    return Health(database, docker, healthy, services.loop_probe.stats())
