"""Retention: finished runs and their logs, slot records and requirements images past their
keep are pruned on a schedule, and what the logs and the images take is measured on the way.

Each rule is a setting, 0 turning it off: runs queued more than TASKDASH_RETENTION_DAYS ago,
runs beyond the newest TASKDASH_KEEP_RUNS_PER_TASK of their task, requirements images no run
has used for TASKDASH_DEPS_UNUSED_DAYS. Decided slot records go after SLOT_RETENTION. A queued
or running run and each task's latest run are never pruned, whatever their age.

The database is held briefly: rows are found a page at a time through an index, and deleted
by primary key, at most `batch` rows a statement, each statement its own transaction. On SQLite
one connection serves the whole app; between two statements the requests waiting for it go
first (its lock is an asyncio.Lock: first come, first served).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.queryset import QuerySet

from taskdash.core import clock
from taskdash.core.config import Settings
from taskdash.core.errors import TaskdashError
from taskdash.core.models import (
    ACTIVE_STATUSES,
    Run,
    ScheduleSlot,
    ScriptType,
    SlotOutcome,
    Task,
)
from taskdash.logs.store import LogStore

log = logging.getLogger(__name__)

# Rows a delete statement removes at most, and rows a read returns at most.
BATCH = 500
PAGE = 500
SLOT_RETENTION = timedelta(days=30)
DECIDED = [outcome for outcome in SlotOutcome if outcome is not SlotOutcome.WAITING]
ACTIVE = list(ACTIVE_STATUSES)


@dataclass(frozen=True)
class DepsImage:
    """A requirements image of this installation, as the engine lists it."""

    tag: str
    image_id: str
    created_at: datetime
    size: int  # with its base image's layers
    own_size: int  # its own layers: what removing it frees


class DepsImages(Protocol):
    """What retention asks of the engine about requirements images (services.py wires it)."""

    async def inventory(self) -> list[DepsImage]: ...

    async def base_id(self, image: str) -> str | None:
        """The id of a base image; None when the engine does not have it."""
        ...

    def tag_for(self, base_id: str, requirements: str) -> str:
        """The tag a run's build chooses for these requirements on this base image."""
        ...

    async def remove(self, tag: str) -> bool:
        """False when the image is gone already or a container still uses it."""
        ...


@dataclass
class Pruned:
    """What was deleted: by one pass, or added up since the server started."""

    runs: int = 0
    log_files: int = 0
    log_bytes: int = 0
    slots: int = 0
    images: int = 0
    image_bytes: int = 0

    def add(self, other: Pruned) -> None:
        for name, value in dataclasses.asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True)
class DepsUsage:
    images: int
    size: int  # each with its base image's layers, as `docker images` shows it
    own_size: int  # their own layers only


@dataclass(frozen=True)
class Storage:
    measured_at: datetime
    log_files: int
    log_bytes: int
    deps: DepsUsage | None  # None: the engine did not answer


@dataclass(frozen=True)
class RetentionPass:
    started_at: datetime
    seconds: float
    pruned: Pruned
    statements: int  # delete statements issued
    largest_statement: int  # rows in the largest
    longest_statement_seconds: float
    problems: tuple[str, ...] = ()


class Retention:
    """Prunes by the settings' rules every TASKDASH_RETENTION_EVERY_SECONDS (the first pass at
    open); `run_once(now)` is the testable step. Keeps the last measure of the storage."""

    def __init__(
        self,
        settings: Settings,
        logs: LogStore,
        images: DepsImages | None = None,
        *,
        batch: int = BATCH,
    ) -> None:
        self.settings = settings
        self.logs = logs
        self.images = images
        self.batch = batch
        self.last: RetentionPass | None = None
        self.storage: Storage | None = None
        self.since_start = Pruned()
        self.passes = 0
        self._measure_wanted = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    # lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.create_task(self._run_loop(), name="retention")

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None

    def refresh_storage(self, older_than: timedelta) -> None:
        """Measure again soon (in the loop) when the last measure is older than `older_than`."""
        if self.storage is None or clock.utcnow() - self.storage.measured_at > older_than:
            self._measure_wanted.set()

    async def _run_loop(self) -> None:
        every = self.settings.retention_every_seconds
        while True:
            due = time.monotonic() + every
            try:
                await self.run_once(clock.utcnow())
            except Exception:
                log.exception("a retention pass failed; the next one tries again")
            while (left := due - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._measure_wanted.wait(), left)
                if self._measure_wanted.is_set():
                    self._measure_wanted.clear()
                    try:
                        self.storage = await self.measure(clock.utcnow())
                    except Exception:
                        log.exception("measuring the storage failed")

    # the step --------------------------------------------------------------------------------

    async def run_once(self, now: datetime) -> RetentionPass:
        """Prune by every rule that is on, as of `now`, then measure what is left."""
        started = time.perf_counter()
        self._measure_wanted.clear()
        deleter = Deleter(self.logs, self.batch)
        await self._prune_runs(now, deleter)
        await self._prune_slots(now, deleter)
        deps, problems = await self._prune_images(now, deleter)
        files, size = await asyncio.to_thread(measure_folder, self.logs.logs_dir)
        self.storage = Storage(now, files, size, deps)
        done = RetentionPass(
            started_at=now,
            seconds=time.perf_counter() - started,
            pruned=deleter.pruned,
            statements=deleter.statements,
            largest_statement=deleter.largest,
            longest_statement_seconds=deleter.longest,
            problems=problems,
        )
        self.since_start.add(deleter.pruned)
        self.passes += 1
        self.last = done
        if done.pruned != Pruned():
            log.info("retention pruned %s in %.2f s", done.pruned, done.seconds)
        return done

    async def measure(self, now: datetime) -> Storage:
        """What the logs and the requirements images take now (the folder is walked off the
        event loop: it stats every file)."""
        files, size = await asyncio.to_thread(measure_folder, self.logs.logs_dir)
        deps = None
        if self.images is not None:
            with contextlib.suppress(TaskdashError, OSError):
                deps = usage_of(await self.images.inventory())
        return Storage(now, files, size, deps)

    async def _prune_runs(self, now: datetime, deleter: Deleter) -> None:
        days, keep = self.settings.retention_days, self.settings.keep_runs_per_task
        if days <= 0 and keep <= 0:
            return
        protected = await latest_run_ids()
        if days > 0:
            old = Run.filter(queued_at__lt=now - timedelta(days=days))
            async for run_id in prunable(old, protected):
                await deleter.run(run_id)
            await deleter.flush_runs()
        if keep > 0:
            async for task_id, kept_from in tasks_over(keep):
                beyond = Run.filter(task_id=task_id, queued_at__lt=kept_from)
                async for run_id in prunable(beyond, protected):
                    await deleter.run(run_id)
        await deleter.flush_runs()

    async def _prune_slots(self, now: datetime, deleter: Deleter) -> None:
        # By slot_at, which the (outcome, slot_at) index covers; recorded_at has no index and
        # differs only for slots recorded late (catch-ups and missed ones).
        old = ScheduleSlot.filter(outcome__in=DECIDED, slot_at__lt=now - SLOT_RETENTION)
        while ids := [row[0] for row in await old.limit(self.batch).values_list("id")]:
            await deleter.slots(ids)
            if len(ids) < self.batch:
                return

    async def _prune_images(
        self, now: datetime, deleter: Deleter
    ) -> tuple[DepsUsage | None, tuple[str, ...]]:
        """Remove the requirements images no run used since the cutoff; what is left."""
        if self.images is None:
            return None, ()
        try:
            found = await self.images.inventory()
            days = self.settings.deps_unused_days
            if days > 0 and found:
                found = await self._remove_unused(found, now - timedelta(days=days), now, deleter)
        except (TaskdashError, OSError) as exc:
            reason = exc.message if isinstance(exc, TaskdashError) else str(exc)
            log.warning("retention: requirements images not checked: %s", reason)
            problem = "requirements images not checked: the Docker engine failed (see the log)"
            return None, (problem,)
        return usage_of(found), ()

    async def _remove_unused(
        self, found: list[DepsImage], cutoff: datetime, now: datetime, deleter: Deleter
    ) -> list[DepsImage]:
        """Remove each image last used (or, never used, made) before `cutoff`; the others."""
        assert self.images is not None
        used = await self._last_used({image.tag for image in found}, now)
        kept = []
        for image in found:
            last = max(image.created_at, used.get(image.tag, image.created_at))
            if last < cutoff and await self.images.remove(image.tag):
                deleter.pruned.images += 1
                deleter.pruned.image_bytes += image.own_size
            else:
                kept.append(image)
        return kept

    async def _last_used(self, tags: set[str], now: datetime) -> dict[str, datetime]:
        """When each of `tags` was last used: by the latest run of each task that may use one
        (`now` while that run is active). A run records its base image, not the requirements
        image it ran on, so the tag is also worked out as the build chooses it: the same base
        image id and requirements. An image none of today's tasks maps to counts as used when
        it was made (no run can reach it again, short of a base image rolled back)."""
        used: dict[str, datetime] = {}
        bases: dict[str, str | None] = {}
        maybe = Task.filter(
            Q(script_type=ScriptType.PYTHON, requirements__not_isnull=True)
            | Q(image__in=sorted(tags)),
            last_run_id__not_isnull=True,
        )
        async for rows in pages(maybe, "last_run_id", "script_type", "image", "requirements"):
            latest = {
                row[0]: row[1:]
                for row in await Run.filter(id__in=[row[1] for row in rows]).values_list(
                    "id", "image", "queued_at", "status"
                )
            }
            for _task_id, run_id, script_type, image, requirements in rows:
                if (run := latest.get(run_id)) is None:
                    continue
                run_image, queued_at, status = run
                when = now if status in ACTIVE_STATUSES else queued_at
                built = await self._built_tag(script_type, image, requirements, bases)
                for tag in tags & {run_image, built}:
                    used[tag] = max(used.get(tag, when), when)
        return used

    async def _built_tag(
        self,
        script_type: str,
        image: str | None,
        requirements: str | None,
        bases: dict[str, str | None],
    ) -> str | None:
        """The tag a build for such a task chooses today; None when it builds none. `bases`
        keeps the base images' ids for the pass."""
        if (
            self.images is None
            or script_type != ScriptType.PYTHON
            or not (requirements or "").strip()
        ):
            return None
        base = self.settings.image_for(script_type, image)
        if base not in bases:
            bases[base] = await self.images.base_id(base)
        base_id = bases[base]
        return self.images.tag_for(base_id, requirements or "") if base_id else None


class Deleter:
    """Deletes rows by primary key, at most `batch` a statement, and counts what it did."""

    def __init__(self, logs: LogStore, batch: int) -> None:
        self.logs = logs
        self.batch = batch
        self.pruned = Pruned()
        self.statements = 0
        self.largest = 0
        self.longest = 0.0
        self._runs: list[UUID] = []

    async def run(self, run_id: UUID) -> None:
        self._runs.append(run_id)
        if len(self._runs) >= self.batch:
            await self.flush_runs()

    async def flush_runs(self) -> None:
        """Delete the runs gathered so far, then their log files (off the event loop)."""
        ids, self._runs = self._runs, []
        if not ids:
            return
        self.pruned.runs += await self._timed(Run.filter(id__in=ids).delete(), len(ids))
        files, size = await asyncio.to_thread(self._delete_logs, ids)
        self.pruned.log_files += files
        self.pruned.log_bytes += size

    async def slots(self, ids: list[int]) -> None:
        """Delete these slot records (at most `batch` of them) in one statement."""
        self.pruned.slots += await self._timed(ScheduleSlot.filter(id__in=ids).delete(), len(ids))

    async def _timed(self, statement: Awaitable[int], rows: int) -> int:
        started = time.perf_counter()
        deleted = await statement
        self.longest = max(self.longest, time.perf_counter() - started)
        self.statements += 1
        self.largest = max(self.largest, rows)
        # Let whatever waits for the database or the loop go before the next statement.
        await asyncio.sleep(0)
        return deleted

    def _delete_logs(self, ids: list[UUID]) -> tuple[int, int]:
        files = size = 0
        for run_id in ids:
            try:
                size += self.logs.path_for(run_id).stat().st_size
            except FileNotFoundError:
                continue
            self.logs.delete(run_id)
            files += 1
        return files, size


# reads, a page at a time ---------------------------------------------------------------------


async def pages(query: QuerySet[Task], *fields: str) -> AsyncIterator[list[tuple[Any, ...]]]:
    """(id, *fields) of the tasks of `query`, PAGE rows a read, in id order."""
    after: UUID | None = None
    while True:
        page = query if after is None else query.filter(id__gt=after)
        rows = list(await page.order_by("id").limit(PAGE).values_list("id", *fields))
        if rows:
            yield rows
        if len(rows) < PAGE:
            return
        after = rows[-1][0]


async def latest_run_ids() -> set[UUID]:
    """Every task's latest run: never pruned."""
    found: set[UUID] = set()
    async for rows in pages(Task.filter(last_run_id__not_isnull=True), "last_run_id"):
        found.update(run_id for _task_id, run_id in rows)
    return found


async def prunable(runs: QuerySet[Run], protected: set[UUID]) -> AsyncIterator[UUID]:
    """The finished runs of `runs` that are no task's latest, oldest first. Each read starts
    after the last row the previous one returned (rows before it are deleted or kept), so no
    read walks the kept ones again. (Written as a range and an exclusion, not an OR: SQLite
    then walks the queued_at index from `after` instead of sorting the whole range.)"""
    query = runs.filter(status__not_in=ACTIVE).order_by("queued_at", "id")
    after: tuple[datetime, UUID] | None = None
    while True:
        page = query
        if after is not None:
            at, run_id = after
            page = query.filter(Q(queued_at__gte=at), ~Q(queued_at=at, id__lte=run_id))
        rows = list(await page.limit(PAGE).values_list("id", "queued_at"))
        for run_id, _queued_at in rows:
            if run_id not in protected:
                yield run_id
        if len(rows) < PAGE:
            return
        after = rows[-1][1], rows[-1][0]


async def tasks_over(keep: int) -> AsyncIterator[tuple[UUID, datetime]]:
    """Each task with more than `keep` runs, with the time its keep-th newest was queued (the
    runs queued before it are beyond the keep)."""
    async for rows in pages(Task.all()):
        ids = [row[0] for row in rows]
        crowded = (
            await Run.filter(task_id__in=ids)
            .annotate(runs=Count("task_id"))  # covered by the (task_id, queued_at) index
            .group_by("task_id")
            .filter(runs__gt=keep)
            .values_list("task_id")
        )
        for (task_id,) in crowded:
            newest = (
                await Run.filter(task_id=task_id)
                .order_by("-queued_at")
                .offset(keep - 1)
                .limit(1)
                .values_list("queued_at")
            )
            if newest:
                yield task_id, newest[0][0]


def measure_folder(folder: Path) -> tuple[int, int]:
    """The log files in `folder` and their bytes."""
    files = size = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.endswith(".log"):
                continue
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
                size += entry.stat(follow_symlinks=False).st_size
                files += 1
    return files, size


def usage_of(images: list[DepsImage]) -> DepsUsage:
    unique = {image.image_id: image for image in images}.values()
    return DepsUsage(
        images=len(unique),
        size=sum(image.size for image in unique),
        own_size=sum(image.own_size for image in unique),
    )
