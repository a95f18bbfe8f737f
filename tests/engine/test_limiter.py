"""The FIFO concurrency limit."""

from __future__ import annotations

import asyncio

from taskdash.engine.limiter import FifoLimiter


async def test_fifo_limiter_serves_waiters_in_order() -> None:
    limiter = FifoLimiter(1)
    order: list[int] = []
    await limiter.acquire()

    async def waiter(number: int) -> None:
        async with limiter.slot():
            order.append(number)

    waiters = [asyncio.create_task(waiter(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert limiter.active == 1 and order == []
    limiter.release()
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2, 3, 4]
    assert limiter.active == 0


async def test_fifo_limiter_cancelled_waiter_gives_its_place_up() -> None:
    limiter = FifoLimiter(1)
    await limiter.acquire()
    cancelled = asyncio.create_task(limiter.acquire())
    kept = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    limiter.release()
    await asyncio.wait_for(kept, 1)
    assert limiter.active == 1


async def test_fifo_limiter_survives_the_holder_and_its_waiters_cancelled_together() -> None:
    # As at shutdown, when every execution is cancelled at once: the holder's release meets
    # waiters already cancelled, which must not then fail on their way out.
    limiter = FifoLimiter(1)

    async def hold() -> None:
        async with limiter.slot():
            await asyncio.sleep(60)

    tasks = [asyncio.create_task(hold()) for _ in range(3)]
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(result) for result in results] == [asyncio.CancelledError] * 3
    assert limiter.active == 0
    await asyncio.wait_for(limiter.acquire(), 1)
