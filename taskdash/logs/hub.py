"""Live fan-out of new log lines and run status changes to followers (SSE streams, the
scheduler's watcher). Storage is logs/store.py."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

SUBSCRIBER_BUFFER = 2048


@dataclass(frozen=True)
class LogEvent:
    kind: Literal["line", "status", "end"]
    run_id: UUID
    number: int = 0
    text: str = ""
    status: str = ""
    task_id: UUID | None = None


# Wakes a waiting reader when the hub closes (compared by identity).
HUB_CLOSED = LogEvent("status", UUID(int=0))


class SubscriptionDropped(Exception):
    """The follower fell more than SUBSCRIBER_BUFFER events behind and was let go."""


class Subscription:
    """A bounded mailbox; a follower that falls behind is dropped rather than slowing the run.

    A dropped subscription gets nothing more; once its reader has taken what was buffered,
    `get` raises SubscriptionDropped so the reader can end (an SSE client then resumes from
    the stored log with Last-Event-ID).
    """

    def __init__(self, hub: LogHub, key: UUID | None) -> None:
        self._hub = hub
        self.key = key
        self.queue: asyncio.Queue[LogEvent] = asyncio.Queue(maxsize=SUBSCRIBER_BUFFER)
        self.dropped = False

    def offer(self, event: LogEvent) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True
            self._hub.unsubscribe(self)

    async def get(self) -> LogEvent:
        # Dropping happens only when the queue is full, so a reader waiting on an empty
        # queue cannot miss it: it always finds the flag after draining the backlog. A hub
        # that closes wakes waiting readers with HUB_CLOSED.
        if self.dropped and self.queue.empty():
            raise SubscriptionDropped
        event = await self.queue.get()
        if event is HUB_CLOSED:
            raise SubscriptionDropped
        return event

    def end(self) -> None:
        """No more events: the reader gets SubscriptionDropped once it has the backlog."""
        self.dropped = True
        self._hub.unsubscribe(self)
        with contextlib.suppress(asyncio.QueueFull):  # full: the reader is not waiting
            self.queue.put_nowait(HUB_CLOSED)

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class LogHub:
    """Live fan-out: the followers of each run, and of every run's status changes."""

    def __init__(self) -> None:
        self._subscribers: dict[UUID | None, set[Subscription]] = {}
        # Set when the server stops: every follower ends, and none can start.
        self.closed = False

    def subscribe(self, run_id: UUID | None) -> Subscription:
        """Follow one run's lines and status, or (run_id None) every run's status changes."""
        subscription = Subscription(self, run_id)
        if self.closed:
            subscription.end()
            return subscription
        self._subscribers.setdefault(run_id, set()).add(subscription)
        return subscription

    def close(self) -> None:
        """End every live follower (the server is stopping; clients reconnect and resume)."""
        self.closed = True
        for group in list(self._subscribers.values()):
            for subscription in list(group):
                subscription.end()

    def unsubscribe(self, subscription: Subscription) -> None:
        group = self._subscribers.get(subscription.key)
        if group is not None:
            group.discard(subscription)
            if not group:
                del self._subscribers[subscription.key]

    def follower_count(self, run_id: UUID) -> int:
        return len(self._subscribers.get(run_id, ()))

    def publish(self, event: LogEvent) -> None:
        for subscription in list(self._subscribers.get(event.run_id, ())):
            subscription.offer(event)
        if event.kind != "line":
            for subscription in list(self._subscribers.get(None, ())):
                subscription.offer(event)

    def publish_status(self, run_id: UUID, task_id: UUID, status: str) -> None:
        kind: Literal["status", "end"] = "status"
        if status not in ("queued", "running"):
            kind = "end"
        self.publish(LogEvent(kind, run_id, status=status, task_id=task_id))
