"""`python -m taskdash.serve`: hypercorn in this process, with a shutdown that ends streams first.

Under `hypercorn app:app` (which also works) an open log stream holds a stop for hypercorn's
graceful timeout, and is then cancelled mid-write. Here SIGINT/SIGTERM first end every live
stream (browsers reconnect and resume with Last-Event-ID once the server is back), so
hypercorn's graceful wait has nothing left to wait for.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from quart import Quart

from taskdash import create_app
from taskdash.core.config import ConfigError, load_settings
from taskdash.services import Services


async def serve(app: Quart, bind: str) -> None:
    config = Config()
    config.bind = [bind]
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


def main() -> None:
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
    asyncio.run(serve(create_app(settings), args.bind))


if __name__ == "__main__":
    main()
