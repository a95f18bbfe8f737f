"""The hardened defaults, checked from inside a real container and in its inspect data; the
attacks on them are in test_attacks.py."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.support import LiveServer, create_task, logs, wait_run

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
    assert seen["job_writable"] is False
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
    assert host["ShmSize"] == 64 * 1024 * 1024
    assert host["Mounts"] == [
        {"Type": "volume", "Target": "/job", "VolumeOptions": {"NoCopy": True}}
    ]


def test_the_configured_runtime_reaches_the_engine(make_server: Callable[..., LiveServer]) -> None:
    # A runtime the engine does not know proves the setting is sent, on any engine.
    with make_server(run_runtime="no-such-runtime").client() as http:
        created = create_task(http, "echo never\n", kind="sh")
        run = wait_run(http, created["task_id"], created["run_id"])
    assert run["status"] == "error"
    assert "no-such-runtime" in run["error"]
