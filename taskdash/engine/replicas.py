"""This process among the replicas that share one database: a lease it renews, and the runs of
replicas whose lease expired, which it takes over.

A run belongs to the replica that claimed it (`Run.owner`): only that one supervises it,
reconciles it, and stops its container. A replica that dies stops renewing; once its lease has
expired, the first replica to notice moves its active runs to itself in one guarded UPDATE (so
two replicas noticing together cannot both get a run) and reconciles them like runs left by its
own earlier process: re-attached where their container is on its engine, queued again or
`error` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from tortoise.expressions import Q

from taskdash.core import clock
from taskdash.core.models import ACTIVE_STATUSES, Replica, Run, RunStatus

log = logging.getLogger(__name__)


class ReplicaLease:
    def __init__(
        self,
        name: str,
        lease_seconds: float,
        on_takeover: Callable[[], Awaitable[None]],
        on_lost: Callable[[], Awaitable[None]],
    ) -> None:
        self.name = name
        self.lease = timedelta(seconds=lease_seconds)
        self.every = lease_seconds / 3
        self._on_takeover = on_takeover
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Hold the lease, and claim the active runs no replica owns (left by a version
        before replicas, or queued and never claimed by a replica that died)."""
        await self.renew()
        await Run.filter(owner=None, status=RunStatus.RUNNING).update(owner=self.name)
        self._task = asyncio.create_task(self._keep(), name="replica-lease")

    async def close(self) -> None:
        """Stop renewing. The lease is left to expire rather than given up: a replica that
        comes back under the same name before then re-attaches its own runs."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def renew(self) -> bool:
        """Extend the lease; False when it had to be taken afresh (another replica found it
        expired and took this one's runs)."""
        now = clock.utcnow()
        updated = await Replica.filter(id=self.name).update(
            heartbeat_at=now, lease_expires_at=now + self.lease
        )
        if not updated:
            await Replica.create(
                id=self.name, started_at=now, heartbeat_at=now, lease_expires_at=now + self.lease
            )
        return bool(updated)

    async def take_over_expired(self) -> bool:
        """Move the active runs of every replica whose lease expired to this one. True when a
        replica had died (its unclaimed queued runs are then to be picked up too)."""
        now = clock.utcnow()
        found = False
        for dead in await Replica.filter(lease_expires_at__lt=now).exclude(id=self.name):
            found = True
            moved = await Run.filter(owner=dead.id, status__in=ACTIVE_STATUSES).update(
                owner=self.name
            )
            log.warning("replica %s stopped renewing its lease: took over %d runs", dead.id, moved)
            await Replica.filter(id=dead.id, lease_expires_at__lt=now).delete()
        return found

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                if not await self.renew():
                    log.error("replica %s's lease expired before it renewed it", self.name)
                    await self._on_lost()
                if await self.take_over_expired():
                    await self._on_takeover()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the lease for good
                log.exception("renewing replica %s's lease failed; trying again", self.name)


def claimable_by(name: str) -> Q:
    """Runs that `name` may claim: its own, and those nobody owns."""
    return Q(owner=name) | Q(owner=None)
