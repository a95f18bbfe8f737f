"""Whether the Docker engine answers, as the runs see it.

A run that finds the engine gone (any EngineUnavailable) reports it here and waits until it
answers again; so do runs about to start. While it is away this asks it every
DOWN_POLL_SECONDS; once it answers, the waiting runs go on and `on_back` (the RunManager's
reconciliation) runs, every time the engine comes back, not only at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from taskdash.core.errors import TaskdashError
from taskdash.engine.docker import DockerEngine, EngineUnavailable

log = logging.getLogger(__name__)

DOWN_POLL_SECONDS = 1.0
LOST = "the Docker engine does not answer: runs wait until it does"


class EngineWatch:
    def __init__(self, engine: DockerEngine, on_back: Callable[[], Awaitable[None]]) -> None:
        self.engine = engine
        self._on_back = on_back
        self._answers = asyncio.Event()
        self._answers.set()  # until a run or the start-up reconciliation finds otherwise
        self._recovery: asyncio.Task[None] | None = None

    @property
    def answers(self) -> bool:
        return self._answers.is_set()

    def lost(self) -> None:
        """The engine did not answer: runs wait until it does again."""
        if self._answers.is_set():
            log.warning(LOST)
        self._answers.clear()
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="engine-watch")

    async def answering(self) -> None:
        """Return once the engine answers (at once while it does)."""
        await self._answers.wait()

    async def answers_now(self) -> None:
        """Return once the engine answers when asked: a run about to leave `queued` asks, so
        it does not start into an outage nobody has noticed yet."""
        while True:
            await self._answers.wait()
            if await self._pings():
                return
            self.lost()

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery

    async def _recover(self) -> None:
        while True:
            if await self._pings():
                self._answers.set()
                log.info("the Docker engine answers again: reconciling runs")
                await self._back()
                # lost() may have been called again meanwhile; then keep trying.
                if self._answers.is_set():
                    return
            await asyncio.sleep(DOWN_POLL_SECONDS)

    async def _pings(self) -> bool:
        try:
            await self.engine.ping()
        except TaskdashError:
            return False
        return True

    async def _back(self) -> None:
        try:
            await self._on_back()
        except EngineUnavailable as exc:
            log.warning("lost the Docker engine again while reconciling: %s", exc.message)
            self._answers.clear()
        except Exception:  # a bug must not stop the runs from going on
            log.exception("reconciling runs after the Docker engine came back failed")
