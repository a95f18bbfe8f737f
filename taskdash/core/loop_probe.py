"""How late the event loop runs a timer: the lag every request and stream sees on top of its
own work. A probe sleeps a fixed interval over and over and records how late it wakes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass

INTERVAL_SECONDS = 0.05
KEEP_SAMPLES = 1200  # the last minute at 50 ms


@dataclass(frozen=True)
class LagStats:
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class LoopProbe:
    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval
        self.lags: deque[float] = deque(maxlen=KEEP_SAMPLES)
        self._job: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._job = asyncio.create_task(self._measure(), name="loop-probe")

    async def close(self) -> None:
        if self._job is not None:
            self._job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._job

    async def _measure(self) -> None:
        while True:
            expected = time.perf_counter() + self.interval
            await asyncio.sleep(self.interval)
            self.lags.append(max(time.perf_counter() - expected, 0.0))

    def stats(self) -> LagStats:
        ordered = sorted(self.lags)
        if not ordered:
            return LagStats(0, 0.0, 0.0, 0.0)

        def at(fraction: float) -> float:
            return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

        return LagStats(len(ordered), at(0.5), at(0.99), ordered[-1] * 1000)
