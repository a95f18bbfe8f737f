"""The hardened defaults, checked from inside a real container."""

from __future__ import annotations

import json

import httpx

from tests.support import create_task, logs, wait_run

PROBE = r"""
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
def writable(path):
    try:
        with open(path, "w") as handle:
            handle.write("x")
        return True
    except OSError:
        return False
print(json.dumps({
    "uid": os.getuid(),
    "gid": os.getgid(),
    "cap_eff": status["CapEff"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "root_writable": writable("/probe"),
    "job_writable": writable("/job/probe"),
    "tmp_writable": writable("/tmp/probe"),
    "cwd": os.getcwd(),
}))
"""


def test_container_runs_locked_down(client: httpx.Client) -> None:
    created = create_task(client, PROBE)
    run = wait_run(client, created["task_id"], created["run_id"])
    assert run["status"] == "succeeded", logs(client, created["task_id"])
    seen = json.loads(logs(client, created["task_id"]))
    assert seen["uid"] == 1000 and seen["gid"] == 1000
    assert seen["cap_eff"] == "0000000000000000"
    assert seen["no_new_privs"] == "1"
    assert seen["interfaces"] == ["lo"]
    assert seen["root_writable"] is False
    # /job is the run's own anonymous volume (removed with the container), writable today.
    assert seen["job_writable"] is True
    assert seen["tmp_writable"] is True
    assert seen["cwd"] == "/tmp"


def test_limits_are_applied_to_the_container(client: httpx.Client) -> None:
    created = create_task(client, "echo limited\n", kind="sh", memory_mb=64, cpus=0.5)
    wait_run(client, created["task_id"], created["run_id"])
    host = client.get(f"/{created['task_id']}").json()["container"]["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 256
    assert host["ReadonlyRootfs"] is True
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert "size=64m" in host["Tmpfs"]["/tmp"]


def test_fork_bomb_is_contained_by_the_pids_limit(client: httpx.Client) -> None:
    script = (
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    for _ in range(2000):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "except OSError:\n"
        "    print('refused after', children)\n"
    )
    created = create_task(client, script, timeout_seconds=30)
    run = wait_run(client, created["task_id"], created["run_id"], timeout=60)
    assert run["status"] == "succeeded", logs(client, created["task_id"])
    words = logs(client, created["task_id"]).split()
    assert words[:2] == ["refused", "after"]
    assert int(words[2]) < 256
    assert client.get("/healthz").status_code == 200


def test_memory_hog_is_killed_and_says_why(client: httpx.Client) -> None:
    script = "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))\n"
    created = create_task(client, script, memory_mb=64, timeout_seconds=60)
    run = wait_run(client, created["task_id"], created["run_id"], timeout=60)
    assert run["status"] == "failed"
    assert run["exit_code"] == 137
    assert "out of memory" in run["error"]
