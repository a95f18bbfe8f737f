"""Many users at once: 50 clients against one real server while 20 runs print for 2 minutes.

The server is `python -m taskdash.serve` on a fresh data dir (SQLite, the real engine), with an
operator token. 20 long runs print a numbered line every 100 ms. Meanwhile each of 50 clients
loops over what a person or a script does: start a run of a small task (the API write), list
the tasks, open a task page, or follow one of the long runs' streams for a few seconds, with a
short pause between actions. Reported: errors users saw (target 0), p50/p99 of API writes,
page loads and lists, the lag of a streamed line behind its print, and the server's event-loop
lag p99 from its own probe (/healthz, the last minute; target under 20 ms).

    .venv/bin/python -m bench.load [--clients 50] [--runs 20] [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import LiveServer, add_token, bearer, create_task, wait_run

PRINTER = (
    "import sys, time\n"
    "for i in range(1, {lines} + 1):\n"
    "    print(f'{{time.time():.6f}} line {{i}}', flush=True)\n"
    "    time.sleep(0.1)\n"
)
THINK_SECONDS = (0.2, 1.0)
FOLLOW_SECONDS = 3.0


@dataclass
class Tally:
    writes: list[float] = field(default_factory=list)
    pages: list[float] = field(default_factory=list)
    lists: list[float] = field(default_factory=list)
    line_lags: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    loop_p99: list[float] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def timed(tally: Tally, bucket: list[float], what: str, request: object) -> None:
    started = time.perf_counter()
    try:
        response: httpx.Response = await request  # type: ignore[misc]
    except httpx.HTTPError as exc:
        tally.errors.append(f"{what}: {type(exc).__name__}")
        return
    bucket.append(time.perf_counter() - started)
    if response.status_code >= 400:
        tally.errors.append(f"{what}: {response.status_code} {response.text[:120]}")


async def follow(http: httpx.AsyncClient, task_id: str, tally: Tally) -> None:
    """A few seconds of a long run's stream: how late each line arrives after its print."""
    deadline = time.monotonic() + FOLLOW_SECONDS
    connected = time.time()
    try:
        async with http.stream("GET", f"/task/{task_id}/logs/stream") as stream:
            if stream.status_code != 200:
                tally.errors.append(f"stream: {stream.status_code}")
                return
            async for text in stream.aiter_lines():
                if text.startswith("data: ") and " line " in text:
                    printed = float(text[6:].split(" ", 1)[0])
                    if printed >= connected:  # live, not the replayed backlog
                        tally.line_lags.append(time.time() - printed)
                if time.monotonic() > deadline:
                    return
    except httpx.HTTPError as exc:
        tally.errors.append(f"stream: {type(exc).__name__}")


async def client_loop(
    base_url: str, token: str, small: str, long_runs: list[str], until: float, tally: Tally
) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(token), timeout=60) as http:
        while time.monotonic() < until:
            action = random.random()
            if action < 0.25:
                await timed(tally, tally.writes, "run", http.put(f"/task/{small}"))
            elif action < 0.5:
                await timed(tally, tally.lists, "list", http.get("/task/"))
            elif action < 0.8:
                page = f"/tasks/{random.choice(long_runs)}"
                await timed(tally, tally.pages, "page", http.get(page))
            else:
                await follow(http, random.choice(long_runs), tally)
            await asyncio.sleep(random.uniform(*THINK_SECONDS))


async def watch_loop_lag(base_url: str, until: float, tally: Tally) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        while time.monotonic() < until:
            await asyncio.sleep(10)
            lag = (await http.get("/healthz")).json()["loop_lag"]
            tally.loop_p99.append(lag["p99_ms"])


async def load(server: LiveServer, token: str, clients: int, runs: int, seconds: float) -> Tally:
    with httpx.Client(base_url=server.base_url, headers=bearer(token), timeout=60) as http:
        small = create_task(http, "echo quick\n", kind="sh", name="quick")
        wait_run(http, small["task_id"], small["run_id"])
        lines = int(seconds * 10) + 50
        long_runs = [
            create_task(http, PRINTER.format(lines=lines), name=f"printer {i}")["task_id"]
            for i in range(runs)
        ]
    tally = Tally()
    until = time.monotonic() + seconds
    await asyncio.gather(
        watch_loop_lag(server.base_url, until, tally),
        *(
            client_loop(server.base_url, token, small["task_id"], long_runs, until, tally)
            for _ in range(clients)
        ),
    )
    return tally


def line(label: str, values: list[float]) -> str:
    return (
        f"{label:<28} n={len(values):>5}  p50 {percentile(values, 0.5) * 1000:7.1f} ms  "
        f"p99 {percentile(values, 0.99) * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        token = add_token(data_dir, "load", "operator")
        env = {
            "TASKDASH_RUN_RATE_PER_MINUTE": "0",
            "TASKDASH_MAX_CONCURRENT_RUNS": str(args.runs + 4),
        }
        server = LiveServer(data_dir, env=env).start()
        try:
            tally = asyncio.run(load(server, token, args.clients, args.runs, args.seconds))
        finally:
            server.stop()
    print(f"{args.clients} clients, {args.runs} printing runs, {args.seconds:.0f} s")
    print(f"errors seen by users: {len(tally.errors)} (target 0)")
    for error in sorted(set(tally.errors))[:10]:
        print(f"  {tally.errors.count(error)} x {error}")
    print(line("API write (PUT a run)", tally.writes))
    print(line("task page (HTML)", tally.pages))
    print(line("task list (JSON)", tally.lists))
    print(line("streamed line after print", tally.line_lags))
    worst = max(tally.loop_p99, default=0.0)
    median = statistics.median(tally.loop_p99) if tally.loop_p99 else 0.0
    print(
        f"event-loop lag p99 (server probe, per minute): median {median:.1f} ms, "
        f"worst {worst:.1f} ms (target < 20 ms)"
    )


if __name__ == "__main__":
    main()
