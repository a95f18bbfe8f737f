"""A sliding-window counter per key: at most `limit` events in any `window` seconds."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

# Past this many keys, every record sweeps out the keys with no recent event (memory stays
# bounded under a spray from many addresses).
SWEEP_ABOVE = 10_000


class SlidingWindow:
    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        horizon = self.clock() - self.window
        while events and events[0] <= horizon:
            events.popleft()
        if not events:
            del self._events[key]
        return events

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may have another event; None when it may now."""
        events = self._recent(key)
        if len(events) < self.limit:
            return None
        return max(events[0] + self.window - self.clock(), 0.001)

    def record(self, key: str) -> None:
        if len(self._events) > SWEEP_ABOVE:
            for old in list(self._events):
                self._recent(old)
        self._recent(key)
        self._events.setdefault(key, deque()).append(self.clock())

    def take(self, key: str) -> float | None:
        """Record an event unless the limit is reached; then the seconds to wait."""
        wait = self.retry_after(key)
        if wait is None:
            self.record(key)
        return wait

    def reset(self, key: str) -> None:
        self._events.pop(key, None)
