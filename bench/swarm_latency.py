"""End-to-end latency of a trivial run on a swarm (TASKDASH_EXECUTOR=swarm), against raw
`docker service create --mode replicated-job`.

Both sides make what a swarm run needs: a config holding the script, an internal overlay
network of its own, and a replicated-job service with the same image (by id, held to this
node), limits, mounts and hardening. Interleaved in one process so machine
noise hits both alike. The taskdash side is timed from `PUT /task/<id>` to the moment the run
is seen finished with its log stored (polling every 5 ms, with an API token); the raw side
from `docker config create` to `docker service create` (not detached: it returns once the job
completed). Clean-up is not timed on either side. Prints medians and their ratio.

Needs the engine to be a swarm manager (`docker swarm init --advertise-addr 127.0.0.1`).

    .venv/bin/python -m bench.swarm_latency [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.run_latency import time_api_run
from tests.support import LiveServer, add_token, bearer, create_task, wait_run

IMAGE = "taskdash/shell:bookworm"
SCRIPT = "echo hello\n"


def docker(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def raw_service_create(name: str, image_id: str, node_id: str) -> list[str]:
    return [
        "service", "create", "--quiet", "--name", name, "--label", "bench=swarm-latency",
        "--mode", "replicated-job", "--max-concurrent", "1", "--replicas", "1",
        "--restart-condition", "none", "--no-resolve-image",
        "--constraint", f"node.id=={node_id}", "--network", name, "--endpoint-mode", "dnsrr",
        "--read-only", "--user", "1000:1000", "--cap-drop", "ALL", "--init", "--no-healthcheck",
        "--limit-memory", "512m", "--limit-cpu", "1", "--limit-pids", "256",
        "--stop-grace-period", "5s",
        "--mount", "type=tmpfs,target=/tmp,tmpfs-size=67108864,tmpfs-mode=1777",
        "--mount", "type=tmpfs,target=/dev/shm,tmpfs-size=67108864",
        "--config", f"source={name},target=/job/script.sh,uid=0,gid=0,mode=0555",
        "--log-driver", "json-file", "--log-opt", "max-size=20971520", "--log-opt", "max-file=1",
        "--workdir", "/tmp", "--entrypoint", "/bin/sh -c 'exec \"$@\" 2>&1' taskdash",
        image_id, "/bin/sh", "/job/script.sh",
    ]  # fmt: skip


def time_raw_service(image_id: str, node_id: str) -> float:
    name = f"bench-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    docker("config", "create", "--label", "bench=swarm-latency", name, "-", stdin=SCRIPT)
    docker("network", "create", "--driver", "overlay", "--internal", name)
    docker(*raw_service_create(name, image_id, node_id))
    elapsed = time.perf_counter() - started
    assert docker("service", "logs", "--raw", name) == "hello"
    # Engine 20.10 leaves a removed job service's container behind (moby/moby#44312).
    task_containers = docker(
        "ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={name}"
    ).split()
    for kind in ("service", "config", "network"):
        docker(kind, "rm", name)
    if task_containers:
        docker("rm", *task_containers)
    return elapsed


def remove_leftovers(instance: str) -> None:
    """What the server had not removed yet when it stopped (it would at its next start)."""
    label = f"label=taskdash.instance={instance}"
    for kind in ("service", "config", "network"):
        if found := docker(kind, "ls", "-q", "--filter", label).split():
            docker(kind, "rm", *found)
    if found := docker("ps", "-aq", "--filter", label).split():
        docker("rm", "-f", *found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if docker("info", "--format", "{{.Swarm.ControlAvailable}}") != "true":
        raise SystemExit("the engine is not a swarm manager: docker swarm init first")
    node_id = docker("info", "--format", "{{.Swarm.NodeID}}")
    image_id = docker("image", "inspect", "--format", "{{.Id}}", IMAGE)
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        token = add_token(data_dir, "bench", "operator")
        env = {"TASKDASH_RUN_RATE_PER_MINUTE": "0", "TASKDASH_EXECUTOR": "swarm"}
        server = LiveServer(data_dir, env=env).start()
        try:
            with httpx.Client(base_url=server.base_url, timeout=30, headers=bearer(token)) as http:
                created = create_task(http, SCRIPT, kind="sh")
                wait_run(http, created["task_id"], created["run_id"])
                time_raw_service(image_id, node_id)  # warm both paths once
                time_api_run(http, created["task_id"])
                api, raw = [], []
                for _ in range(args.rounds):
                    raw.append(time_raw_service(image_id, node_id))
                    api.append(time_api_run(http, created["task_id"]))
        finally:
            server.stop()
            remove_leftovers(server.environment()["TASKDASH_INSTANCE_ID"])
    api_ms, raw_ms = statistics.median(api) * 1000, statistics.median(raw) * 1000
    print(f"rounds: {args.rounds} (interleaved)")
    print(f"raw config + network + `docker service create`  median {raw_ms:7.1f} ms")
    print(f"  (min {min(raw) * 1000:.1f})")
    print(f"taskdash PUT -> finished (swarm executor)       median {api_ms:7.1f} ms")
    print(f"  (min {min(api) * 1000:.1f})")
    print(f"ratio taskdash / raw service: {api_ms / raw_ms:.2f}")


if __name__ == "__main__":
    main()
