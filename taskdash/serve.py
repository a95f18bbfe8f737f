"""`python -m taskdash.serve`: hypercorn in this process, with a shutdown that ends streams first.

Under `hypercorn app:app` (which also works) an open log stream holds a stop for hypercorn's
graceful timeout, and is then cancelled mid-write. Here SIGINT/SIGTERM first end every live
stream (browsers reconnect and resume with Last-Event-ID once the server is back), so
hypercorn's graceful wait has nothing left to wait for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ipaddress
import signal

import uvloop
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from quart import Quart

from taskdash import create_app
from taskdash.core.config import ConfigError, Settings, load_settings
from taskdash.core.db import close_database, open_database
from taskdash.operations.accounts import credentials_exist
from taskdash.services import Services

# Slow clients. A connection that is idle, or whose request line and headers are not complete,
# is closed after KEEP_ALIVE_SECONDS (so headers sent a byte a second end there); the headers
# may take MAX_HEADER_BYTES. A request's body must arrive within TASKDASH_BODY_TIMEOUT_SECONDS
# (Quart's BODY_TIMEOUT: then 408 and the connection closed, whether it trickles or stalls).
# No read_timeout: it closes a connection that sends nothing for that long, and a log
# stream's client sends nothing after its request.
KEEP_ALIVE_SECONDS = 5
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MAX_HEADER_BYTES = 16 * 1024
APP_QUEUE_MESSAGES = 2


async def serve(app: Quart, bind: str) -> None:
    config = Config()
    config.bind = [bind]
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    config.h2_max_header_list_size = MAX_HEADER_BYTES
    config.read_timeout = None
    # A request whose body waits for room (web/body_budget.py) holds only this many 64 KiB
    # reads in hypercorn's queue (10 by default: 100 waiting uploads took 64 MiB).
    config.max_app_queue_size = APP_QUEUE_MESSAGES
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    async def shutdown_trigger() -> None:
        await stopping.wait()
        services: Services | None = app.extensions.get("taskdash")
        if services is not None:
            services.hub.close()

    await hypercorn_serve(app, config, shutdown_trigger=shutdown_trigger)


def return_freed_memory() -> None:
    """Let glibc give freed request bodies back to the system: after its first big free it
    raises its mmap threshold, and later bodies come from a heap it keeps (130 MiB stayed after
    100 concurrent uploads). A fixed 32 KiB threshold maps and unmaps them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 32 * 1024)


def main() -> None:
    return_freed_memory()
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    parser = argparse.ArgumentParser(description="Serve taskdash (hypercorn, in this process).")
    parser.add_argument(
        "--bind",
        default=f"{settings.host}:{settings.port}",
        help="host:port (default TASKDASH_HOST:TASKDASH_PORT)",
    )
    args = parser.parse_args()
    refusal = asyncio.run(why_not_serve(settings, args.bind))
    if refusal:
        raise SystemExit(refusal)
    # uvloop: the same asyncio, with less overhead per event (bench/load.py: the loop's lag
    # p99 and the p50 of requests about a third lower than with the default loop).
    uvloop.run(serve(create_app(settings), args.bind))


async def why_not_serve(settings: Settings, bind: str) -> str | None:
    """Why binding `bind` would let anyone who reaches it run code; None when it would not."""
    host = bind.rpartition(":")[0].strip("[]") if ":" in bind else bind
    if settings.allow_anonymous or is_loopback_host(host):
        return None
    database = await open_database(settings)
    try:
        if await credentials_exist():
            return None
    finally:
        await close_database(database)
    return (
        f"taskdash: refusing to listen on {bind} without credentials: anyone who can reach it "
        "could run code on this machine. Create an admin first:\n"
        "    .venv/bin/python -m taskdash user add NAME --role admin\n"
        "(or an API token: .venv/bin/python -m taskdash token create NAME --role operator), "
        "listen on 127.0.0.1, or set TASKDASH_ALLOW_ANONYMOUS=true to serve without "
        "credentials."
    )


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    main()
