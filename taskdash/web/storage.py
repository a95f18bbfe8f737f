"""Storage: what the run logs and the requirements images take, and what retention pruned; as
JSON, and for the task list's card (`storage_figures()` in templates)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from pydantic import BaseModel, Field
from quart import Blueprint, Response
from quart_schema import document_response

from taskdash.core.models import Role
from taskdash.operations.storage import StorageFigures, storage_figures
from taskdash.scheduling.retention import Pruned
from taskdash.web.auth import allow
from taskdash.web.context import services
from taskdash.web.responses import json_response

storage = Blueprint("storage", __name__)


class LogsOut(BaseModel):
    files: int
    bytes: int


class DepsImagesOut(BaseModel):
    images: int
    bytes: int = Field(description="their sizes as `docker images` shows them, base layers and all")
    own_bytes: int = Field(description="their own layers: what removing them all would free")


class PrunedOut(BaseModel):
    runs: int
    log_files: int
    log_bytes: int
    slots: int
    images: int
    image_bytes: int


class RetentionPassOut(BaseModel):
    started_at: datetime
    seconds: float
    pruned: PrunedOut
    statements: int = Field(description="delete statements, each its own transaction")
    largest_statement_rows: int
    longest_statement_ms: float
    problems: list[str]


class RetentionRulesOut(BaseModel):
    retention_days: float
    keep_runs_per_task: int
    deps_unused_days: float
    every_seconds: float


class RetentionOut(BaseModel):
    rules: RetentionRulesOut = Field(description="the settings' limits; 0 turns a rule off")
    passes: int
    last_pass: RetentionPassOut | None
    pruned_since_start: PrunedOut


class StorageOut(BaseModel):
    measured_at: datetime | None
    logs: LogsOut | None
    deps_images: DepsImagesOut | None = Field(
        description="this installation's taskdash/deps images; null when the engine did not answer"
    )
    retention: RetentionOut


def pruned_out(pruned: Pruned) -> PrunedOut:
    return PrunedOut(**dataclasses.asdict(pruned))


def storage_out(figures: StorageFigures) -> StorageOut:
    measured, last = figures.storage, figures.last_pass
    deps = measured.deps if measured is not None else None
    return StorageOut(
        measured_at=measured.measured_at if measured else None,
        logs=LogsOut(files=measured.log_files, bytes=measured.log_bytes) if measured else None,
        deps_images=(
            DepsImagesOut(images=deps.images, bytes=deps.size, own_bytes=deps.own_size)
            if deps
            else None
        ),
        retention=RetentionOut(
            rules=RetentionRulesOut(**dataclasses.asdict(figures.rules)),
            passes=figures.passes,
            last_pass=(
                RetentionPassOut(
                    started_at=last.started_at,
                    seconds=last.seconds,
                    pruned=pruned_out(last.pruned),
                    statements=last.statements,
                    largest_statement_rows=last.largest_statement,
                    longest_statement_ms=last.longest_statement_seconds * 1000,
                    problems=list(last.problems),
                )
                if last
                else None
            ),
            pruned_since_start=pruned_out(figures.since_start),
        ),
    )


@storage.get("/storage")
@allow(Role.VIEWER)
@document_response(StorageOut)
async def storage_json() -> Response:
    """What the run logs and the requirements images take, and what retention pruned."""
    return json_response(storage_out(storage_figures(services())))


@storage.app_template_global("storage_figures")
def figures_for_templates() -> StorageFigures:
    return storage_figures(services())


@storage.app_template_filter("size")
def format_size(value: int) -> str:
    """Bytes in words: 999 B, 1.5 KiB, 12.3 MiB, 2.0 GiB."""
    amount, unit = float(value), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if amount < 1024:
            break
        amount, unit = amount / 1024, larger
    return f"{value} B" if unit == "B" else f"{amount:.1f} {unit}"
