"""Run logs: an append-only file per run, plus live fan-out of new lines and status changes.

A line's number is its position in the run's log file (1-based); it is also the SSE event id,
so a follower that replays the file and then follows the hub sees every line exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from uuid import UUID

MAX_LINE_CHARS = 16 * 1024
# Room kept under the cap for the line that says the log was truncated.
TRUNCATION_NOTE_BYTES = 128
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


def split_lines(pending: str, chunk: str) -> tuple[list[str], str]:
    """Pure: complete lines from `pending + chunk` and the unterminated rest.

    Over-long lines are cut at MAX_LINE_CHARS so memory stays bounded whatever is printed.
    """
    text = pending + chunk
    lines = text.split("\n")
    rest = lines.pop()
    out: list[str] = []
    for line in lines:
        out.extend(_cut(line.removesuffix("\r")))
    while len(rest) > MAX_LINE_CHARS:
        out.append(rest[:MAX_LINE_CHARS])
        rest = rest[MAX_LINE_CHARS:]
    return out, rest


def _cut(line: str) -> list[str]:
    if len(line) <= MAX_LINE_CHARS:
        return [line]
    return [line[i : i + MAX_LINE_CHARS] for i in range(0, len(line), MAX_LINE_CHARS)]


class LogWriter:
    """Appends one run's lines to its file, capping the stored size."""

    def __init__(self, hub: LogHub, run_id: UUID, max_bytes: int) -> None:
        self._hub = hub
        self.run_id = run_id
        self.path = hub.path_for(run_id)
        self.max_bytes = max_bytes
        self.lines, self.bytes = repair_log_file(self.path)
        self.truncated = self.bytes >= max_bytes - TRUNCATION_NOTE_BYTES
        self._file = self.path.open("ab")

    def write(self, lines: list[str]) -> None:
        for line in lines:
            if self.truncated:
                return
            data = (line + "\n").encode("utf-8", "replace")
            if self.bytes + len(data) > self.max_bytes - TRUNCATION_NOTE_BYTES:
                self.truncated = True
                line = (
                    f"[taskdash] log truncated: stored output is capped at {self.max_bytes} bytes"
                )
                data = (line + "\n").encode()
            self._file.write(data)
            self.bytes += len(data)
            self.lines += 1
            self._hub.publish(LogEvent("line", self.run_id, number=self.lines, text=line))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def repair_log_file(path: Path) -> tuple[int, int]:
    """Drop a half-written last line (left by a crash) and count what is stored."""
    if not path.exists():
        return 0, 0
    with path.open("rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            handle.truncate(end)
    return data[:end].count(b"\n"), end


class LogHub:
    """Owns the log directory and the live subscribers of every run."""

    def __init__(self, logs_dir: Path, max_bytes: int) -> None:
        self.logs_dir = logs_dir
        self.max_bytes = max_bytes
        self._subscribers: dict[UUID | None, set[Subscription]] = {}
        # Set when the server stops: every follower ends, and none can start.
        self.closed = False
        logs_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, run_id: UUID) -> Path:
        return self.logs_dir / f"{run_id}.log"

    def open_writer(self, run_id: UUID) -> LogWriter:
        return LogWriter(self, run_id, self.max_bytes)

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

    def read_lines(self, run_id: UUID, after: int = 0) -> Generator[tuple[int, str], None, None]:
        """Stored lines numbered from 1, skipping the first `after`."""
        path = self.path_for(run_id)
        if not path.exists():
            return
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number > after and raw.endswith(b"\n"):
                    yield number, raw[:-1].decode("utf-8", "replace")

    def read_text(self, run_id: UUID) -> bytes:
        path = self.path_for(run_id)
        return path.read_bytes() if path.exists() else b""

    def delete(self, run_id: UUID) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_for(run_id))
