"""End-to-end latency of a trivial run through the API, against raw `docker run --rm`.

Both sides run the same image with the same hardening flags and mounts, interleaved in one
process so machine noise hits both alike. The API side is measured from `PUT /task/<id>` to the
moment the run is seen finished with its log stored (polling every 5 ms), with an API token as
a client on a network would send it (every request is authenticated); the raw side is
`docker run --rm` from exec to exit. Prints medians and their ratio (target: <= 1.25).

    .venv/bin/python -m bench.run_latency [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support import LiveServer, add_token, bearer, create_task, wait_run

IMAGE = "taskdash/shell:bookworm"
RAW_DOCKER_RUN = [
    "docker", "run", "--rm", "--network", "none", "--read-only", "--user", "1000:1000",
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--memory", "512m",
    "--memory-swap", "512m", "--pids-limit", "256", "--tmpfs", "/tmp:rw,size=64m",
    "--shm-size", "64m", "--mount", "type=volume,target=/job,volume-nocopy",
    "--entrypoint", "", "--no-healthcheck", "--init", IMAGE, "/bin/sh", "-c", "echo hello",
]  # fmt: skip


def time_raw_docker_run() -> float:
    started = time.perf_counter()
    subprocess.run(RAW_DOCKER_RUN, check=True, capture_output=True)
    return time.perf_counter() - started


def time_api_run(http: httpx.Client, task_id: str) -> float:
    started = time.perf_counter()
    response = http.put(f"/task/{task_id}")
    response.raise_for_status()
    run_id = response.json()["run_id"]
    while True:
        run = http.get(f"/task/{task_id}/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            break
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    assert run["status"] == "succeeded" and run["log_lines"] == 1, run
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        token = add_token(data_dir, "bench", "operator")
        server = LiveServer(data_dir, env={"TASKDASH_RUN_RATE_PER_MINUTE": "0"}).start()
        try:
            with httpx.Client(base_url=server.base_url, timeout=30, headers=bearer(token)) as http:
                created = create_task(http, "echo hello\n", kind="sh")
                wait_run(http, created["task_id"], created["run_id"])
                time_raw_docker_run()  # warm both paths once
                time_api_run(http, created["task_id"])
                api, raw = [], []
                for _ in range(args.rounds):
                    raw.append(time_raw_docker_run())
                    api.append(time_api_run(http, created["task_id"]))
        finally:
            server.stop()
    api_ms, raw_ms = statistics.median(api) * 1000, statistics.median(raw) * 1000
    print(f"rounds: {args.rounds} (interleaved)")
    print(f"raw `docker run --rm`      median {raw_ms:7.1f} ms  (min {min(raw) * 1000:.1f})")
    print(f"taskdash PUT -> finished   median {api_ms:7.1f} ms  (min {min(api) * 1000:.1f})")
    print(f"ratio taskdash / docker run: {api_ms / raw_ms:.2f}  (target <= 1.25)")


if __name__ == "__main__":
    main()
