"""Latency of a log line from `print` in the container to an SSE client, for 1 and 200 followers.

Starts a real server (hypercorn, as tests/support.py's LiveServer does), runs a Python task that
waits until the followers are connected and then prints `time.time()` every INTERVAL seconds,
and follows `GET /task/<id>/logs/stream` with N concurrent clients in one asyncio loop. Each
line's latency is the client's `time.time()` on receipt minus the printed time: container and
host share one kernel clock. Prints p50 / p95 / max in ms (target: p95 under 100 ms).

Two clients, both asyncio: `socket` reads the stream straight off a socket (HTTP/1.0, so no
chunk framing) and stands for N browsers that each parse their own stream; `httpx` runs N
httpx streams in this one process, where the client's own per-read cost, paid N times per line
on one core, dominates what is measured at 200 followers.

    .venv/bin/python -m bench.log_latency [--followers 1 200] [--lines 100] [--interval 0.05]
                                          [--client socket httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import LiveServer, create_task

TARGET_P95_MS = 100.0
SCRIPT = (
    "import time\n"
    "time.sleep({delay})\n"
    "for _ in range({lines}):\n"
    "    print(f'{{time.time():.6f}}', flush=True)\n"
    "    time.sleep({interval})\n"
)


@dataclass
class Follower:
    connected_at: float = 0.0
    first_printed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ended: bool = False
    event: bytes = b""
    pending: bytes = b""

    def feed(self, data: bytes, now: float) -> None:
        """Parse a piece of the event stream received at `now`."""
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            self.on_line(line.rstrip(b"\r"), now)

    def on_line(self, line: bytes, now: float) -> None:
        if line.startswith(b"event: "):
            self.event = line[7:]
            self.connected_at = self.connected_at or now  # the first event: the run's status
        elif line.startswith(b"data: ") and self.event == b"line":
            printed = float(line[6:])
            self.latencies.append(now - printed)
            self.first_printed = self.first_printed or printed
        elif not line and self.event == b"end":
            self.ended = True


Follow = Callable[[LiveServer, str, Follower], Awaitable[None]]


async def follow_socket(server: LiveServer, path: str, follower: Follower) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    while not follower.ended and (data := await reader.read(1 << 16)):
        follower.feed(data, time.time())
    writer.close()


def follow_httpx(client: httpx.AsyncClient) -> Follow:
    async def follow(_server: LiveServer, path: str, follower: Follower) -> None:
        async with client.stream("GET", path) as response:
            response.raise_for_status()
            async for data in response.aiter_raw():
                follower.feed(data, time.time())
                if follower.ended:
                    return

    return follow


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(
    server: LiveServer, follow: Follow, followers: int, lines: int, interval: float
) -> list[Follower]:
    # Enough head start for every follower to connect before the first line is printed.
    delay = 2.0 + followers / 100
    script = SCRIPT.format(delay=delay, lines=lines, interval=interval)
    with server.client() as http:
        created = create_task(http, script)
    path = f"/task/{created['task_id']}/logs/stream"
    states = [Follower() for _ in range(followers)]
    async with asyncio.timeout(delay + lines * interval + 120):
        await asyncio.gather(*(follow(server, path, state) for state in states))
    return states


def report(client: str, followers: int, states: list[Follower], lines: int) -> None:
    samples = [latency * 1000 for state in states for latency in state.latencies]
    complete = sum(1 for s in states if s.ended and len(s.latencies) == lines)
    # A follower connected after the first print got early lines by replay: not live latency.
    late = sum(1 for s in states if s.connected_at > s.first_printed)
    p95 = percentile(samples, 0.95)
    verdict = "ok" if p95 < TARGET_P95_MS else "OVER"
    print(
        f"{client:6s} {followers:4d} follower(s): {len(samples):6d} lines  "
        f"p50 {statistics.median(samples):6.1f} ms  p95 {p95:6.1f} ms  "
        f"max {max(samples):6.1f} ms  complete {complete}/{followers}  late {late}  "
        f"[{verdict}: target p95 < {TARGET_P95_MS:.0f} ms]"
    )


async def run(args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    with tempfile.TemporaryDirectory() as folder:
        server = LiveServer(Path(folder) / "data").start()
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=120, limits=limits) as c:
                clients: dict[str, Follow] = {"socket": follow_socket, "httpx": follow_httpx(c)}
                await measure(server, follow_socket, 1, 5, args.interval)  # warm-up
                for name in args.client:
                    for count in args.followers:
                        states = await measure(
                            server, clients[name], count, args.lines, args.interval
                        )
                        report(name, count, states, args.lines)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument(
        "--client", nargs="+", choices=["socket", "httpx"], default=["socket", "httpx"]
    )
    args = parser.parse_args()
    print(f"{args.lines} lines, one every {args.interval * 1000:.0f} ms")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
