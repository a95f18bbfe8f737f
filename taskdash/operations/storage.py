"""What the run logs and the requirements images take, and what retention pruned: the figures
retention measured, read from memory. Nothing here touches the disk, the database or the
engine, so the task list can show them on every load; a measure older than FRESH_FOR is
taken again in the background, for the next load."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from taskdash.scheduling.retention import Pruned, RetentionPass, Storage
from taskdash.services import Services

FRESH_FOR = timedelta(minutes=5)


@dataclass(frozen=True)
class RetentionRules:
    """The settings' limits (0: the rule is off)."""

    retention_days: float
    keep_runs_per_task: int
    deps_unused_days: float
    every_seconds: float


@dataclass(frozen=True)
class StorageFigures:
    storage: Storage | None  # None until the first pass has measured
    last_pass: RetentionPass | None
    since_start: Pruned
    passes: int
    rules: RetentionRules


def storage_figures(services: Services) -> StorageFigures:
    retention = services.retention
    retention.refresh_storage(FRESH_FOR)
    settings = services.settings
    return StorageFigures(
        storage=retention.storage,
        last_pass=retention.last,
        since_start=dataclasses.replace(retention.since_start),
        passes=retention.passes,
        rules=RetentionRules(
            retention_days=settings.retention_days,
            keep_runs_per_task=settings.keep_runs_per_task,
            deps_unused_days=settings.deps_unused_days,
            every_seconds=settings.retention_every_seconds,
        ),
    )
