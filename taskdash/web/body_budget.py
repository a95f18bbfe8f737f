"""A cap on the request bodies held in memory at once.

Quart reads a request's whole body into memory before the route parses it, with no
backpressure, so memory grew with the number of concurrent uploads (100 uploads of 1 MiB took
160 MiB). Here a request that declares a body larger than SMALL_BODY reserves its length from
a budget before the app sees it; while the budget is spent it waits (hypercorn then stops
reading its socket), and after TASKDASH_BODY_TIMEOUT_SECONDS of waiting it is answered 503. A
body over the request limit is passed on at once: Quart refuses it from its Content-Length
without reading it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

# ASGI's types, loosely: Quart's own are TypedDict unions the middleware need not know.
Scope = Any
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

SMALL_BODY = 64 * 1024


def declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class BodyBudget:
    def __init__(self, app: ASGIApp, budget: int, limit: int, wait_seconds: float) -> None:
        self.app = app
        self.budget = budget
        self.limit = limit
        self.wait_seconds = wait_seconds
        self.free = budget
        self._changed: asyncio.Condition | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = declared_length(scope) if scope["type"] == "http" else 0
        if length <= SMALL_BODY or length > self.limit:
            await self.app(scope, receive, send)
            return
        reserved = min(length, self.budget)
        if not await self._reserve(reserved):
            await busy(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            await self._release(reserved)

    @property
    def changed(self) -> asyncio.Condition:
        if self._changed is None:  # made on the serving loop, not at import
            self._changed = asyncio.Condition()
        return self._changed

    async def _reserve(self, size: int) -> bool:
        async with self.changed:
            try:
                async with asyncio.timeout(self.wait_seconds):
                    await self.changed.wait_for(lambda: self.free >= size)
            except TimeoutError:
                return False
            self.free -= size
            return True

    async def _release(self, size: int) -> None:
        async with self.changed:
            self.free += size
            self.changed.notify_all()


async def busy(send: Send) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "busy",
                "message": "too many uploads at once: try again in a moment",
                "status": 503,
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", b"5"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
