"""LogHub and LogStore without a server: numbering, replay from the file, fan-out and dropping
slow followers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from taskdash.logs.hub import SUBSCRIBER_BUFFER, LogEvent, LogHub, SubscriptionDropped
from taskdash.logs.store import LogStore


@pytest.fixture()
def hub() -> LogHub:
    return LogHub()


@pytest.fixture()
def store(tmp_path: Path, hub: LogHub) -> LogStore:
    return LogStore(tmp_path / "logs", 1024 * 1024, hub)


async def test_lines_are_numbered_stored_and_published(hub: LogHub, store: LogStore) -> None:
    run_id = uuid.uuid4()
    with hub.subscribe(run_id) as subscription:
        writer = store.open_writer(run_id)
        writer.write(["one", "two", "three"])
        writer.close()
        events = [await subscription.get() for _ in range(3)]
    assert [(e.number, e.text) for e in events] == [(1, "one"), (2, "two"), (3, "three")]
    assert list(store.read_lines(run_id, after=1)) == [(2, "two"), (3, "three")]
    assert hub.follower_count(run_id) == 0


async def test_status_events_reach_the_run_and_the_global_followers(
    hub: LogHub, store: LogStore
) -> None:
    run_id, task_id = uuid.uuid4(), uuid.uuid4()
    with hub.subscribe(run_id) as one, hub.subscribe(None) as everything:
        store.open_writer(run_id).write(["a line"])
        hub.publish_status(run_id, task_id, "running")
        hub.publish_status(run_id, task_id, "succeeded")
        assert [(await one.get()).kind for _ in range(3)] == ["line", "status", "end"]
        statuses = [await everything.get() for _ in range(2)]
    assert [(e.kind, e.status, e.task_id) for e in statuses] == [
        ("status", "running", task_id),
        ("end", "succeeded", task_id),
    ]


async def test_a_follower_that_falls_behind_is_dropped_without_slowing_others(
    hub: LogHub,
) -> None:
    run_id = uuid.uuid4()
    slow = hub.subscribe(run_id)
    fast = hub.subscribe(run_id)
    received = 0
    for number in range(1, SUBSCRIBER_BUFFER + 11):
        hub.publish(LogEvent("line", run_id, number=number, text=str(number)))
        await fast.get()
        received += 1
    assert received == SUBSCRIBER_BUFFER + 10
    assert slow.dropped and not fast.dropped
    assert hub.follower_count(run_id) == 1  # the dropped one costs nothing any more
    backlog = [(await slow.get()).number for _ in range(SUBSCRIBER_BUFFER)]
    assert backlog == list(range(1, SUBSCRIBER_BUFFER + 1))
    with pytest.raises(SubscriptionDropped):
        await asyncio.wait_for(slow.get(), 1)
    slow.close()
    fast.close()
    assert hub.follower_count(run_id) == 0


async def test_closing_the_hub_ends_every_follower_after_its_backlog(hub: LogHub) -> None:
    run_id, task_id = uuid.uuid4(), uuid.uuid4()
    idle, busy = hub.subscribe(None), hub.subscribe(run_id)
    waiting = asyncio.create_task(idle.get())
    await asyncio.sleep(0)  # `idle` now waits on an empty queue
    hub.publish_status(run_id, task_id, "running")
    assert (await waiting).status == "running"
    waiting = asyncio.create_task(idle.get())
    await asyncio.sleep(0)
    busy.offer(LogEvent("line", run_id, number=1, text="kept"))

    hub.close()

    with pytest.raises(SubscriptionDropped):
        await asyncio.wait_for(waiting, 5)  # woken, not left waiting
    backlog = [await busy.get(), await busy.get()]  # the backlog first
    assert [(e.status, e.text) for e in backlog] == [("running", ""), ("", "kept")]
    with pytest.raises(SubscriptionDropped):
        await busy.get()
    late = hub.subscribe(run_id)  # nobody can follow a closed hub
    with pytest.raises(SubscriptionDropped):
        await asyncio.wait_for(late.get(), 5)
    hub.publish_status(run_id, task_id, "succeeded")  # publishing still works, to no one
    assert hub.follower_count(run_id) == 0
