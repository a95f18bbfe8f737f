"""Several replicas on one database: runs per second with 1, 2 and 3 replicas, and a log line's
latency to a follower on the replica that supervises the run and on another one.

Replicas are `python -m taskdash.serve` processes sharing one SQLite file and data folder, on
the one local engine, each with its own TASKDASH_REPLICA_ID. Throughput: RUNS trivial runs are
created round-robin through the replicas as fast as the API takes them, and the clock stops when
the last has finished; each replica runs TASKDASH_MAX_CONCURRENT_RUNS (default: the core count)
at once, so more replicas also means more containers at once on the same engine. Latency: a run
on replica A prints `time.time()` every 50 ms; one follower streams it from A, one from B; a
line's latency is its receipt time minus the printed time (container and host share a clock).

    .venv/bin/python -m bench.replicas [--runs 60] [--lines 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.support import LiveServer, create_task, wait_run

TRIVIAL = "print('hi')\n"
PRINTER = (
    "import time\n"
    "time.sleep(2)\n"
    "for _ in range({lines}):\n"
    "    print(f'{{time.time():.6f}}', flush=True)\n"
    "    time.sleep(0.05)\n"
)


def replicas(data_dir: Path, count: int) -> list[LiveServer]:
    servers = [
        LiveServer(
            data_dir,
            env={"TASKDASH_REPLICA_ID": f"bench-{index}", "TASKDASH_RUN_RATE_PER_MINUTE": "0"},
        )
        for index in range(count)
    ]
    for server in servers:
        server.launch()
    for server in servers:
        server.wait_ready()
    return servers


def stop_all(servers: list[LiveServer]) -> None:
    for server in servers:
        server.stop()


def throughput(count: int, runs: int) -> float:
    """Runs per second, creation of the first to the end of the last."""
    with tempfile.TemporaryDirectory() as folder:
        servers = replicas(Path(folder) / "data", count)
        clients = [server.client() for server in servers]
        try:
            create_task(clients[0], TRIVIAL)  # warm: the image is read once
            started = time.perf_counter()
            made = [create_task(clients[i % count], TRIVIAL) for i in range(runs)]
            for item in made:
                run = wait_run(clients[0], item["task_id"], item["run_id"], timeout=300)
                assert run["status"] == "succeeded", run
            return runs / (time.perf_counter() - started)
        finally:
            for client in clients:
                client.close()
            stop_all(servers)


async def follow(base_url: str, task_id: str, run_id: str, lags: list[float]) -> None:
    url = f"{base_url}/task/{task_id}/logs/stream"
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", url, params={"run_id": run_id}) as stream,
    ):
        event = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "line":
                lags.append(time.time() - float(line[6:]))
            elif event == "end":
                return


def line_latency(lines: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        servers = replicas(Path(folder) / "data", 2)
        try:
            with servers[0].client() as http:
                made = create_task(http, PRINTER.format(lines=lines))
            local: list[float] = []
            remote: list[float] = []

            async def both() -> None:
                await asyncio.gather(
                    follow(servers[0].base_url, made["task_id"], made["run_id"], local),
                    follow(servers[1].base_url, made["task_id"], made["run_id"], remote),
                )

            asyncio.run(both())
            return local, remote
        finally:
            stop_all(servers)


def ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--lines", type=int, default=200)
    args = parser.parse_args()

    rates = {count: throughput(count, args.runs) for count in (1, 2, 3)}
    for count, rate in rates.items():
        print(
            f"{count} replica(s): {args.runs} trivial runs at {rate:.2f} runs/s "
            f"(x{rate / rates[1]:.2f} of one replica)"
        )
    local, remote = line_latency(args.lines)
    for name, lags in (("on the supervising replica", local), ("on another replica", remote)):
        print(
            f"line latency {name}: n={len(lags)} p50 {ms(lags, 0.5):.1f} ms "
            f"p95 {ms(lags, 0.95):.1f} ms (median {statistics.median(lags) * 1000:.1f} ms)"
        )


if __name__ == "__main__":
    main()
