"""Runs on a real one-node swarm (TASKDASH_EXECUTOR=swarm): every run a replicated-job service.

The same outcomes as the docker executor's: the whole log and the exit code, failed, stopped,
timed out, live lines to an SSE follower, and a run that survives the server's kill -9. And
what each run leaves on the swarm afterwards: nothing (no service, config or network).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.engine.conftest import Follower
from tests.support import LiveServer, create_task, get_run, logs, wait_for, wait_run

SWARM_ENV = {
    "TASKDASH_EXECUTOR": "swarm",
    "TASKDASH_RUN_RATE_PER_MINUTE": "0",
    "TASKDASH_STOP_GRACE_SECONDS": "2",
}


def instance_of(live: LiveServer) -> str:
    return live.environment()["TASKDASH_INSTANCE_ID"]


def swarm_objects(instance: str, run_id: str | None = None) -> dict[str, list[str]]:
    """This instance's services, configs and networks on the swarm (of one run, if given)."""
    labels = [f"label=taskdash.instance={instance}"]
    if run_id is not None:
        labels.append(f"label=taskdash.run_id={run_id}")
    filters = [arg for label in labels for arg in ("--filter", label)]
    found: dict[str, list[str]] = {}
    for kind in ("service", "config", "network"):
        listed = subprocess.run(
            ["docker", kind, "ls", "-q", *filters], capture_output=True, text=True, check=True
        )
        found[kind] = listed.stdout.split()
    return found


def remove_swarm_objects(instance: str) -> None:
    for kind, ids in swarm_objects(instance).items():
        if ids:
            subprocess.run(["docker", kind, "rm", *ids], capture_output=True)


def start_server(folder: Path, **env: str) -> LiveServer:
    return LiveServer(folder, env=SWARM_ENV | env).start()


@pytest.fixture(scope="module")
def swarm_server(
    swarm_manager: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("swarm") / "data")
    yield live
    live.stop()
    remove_swarm_objects(instance_of(live))


@pytest.fixture()
def http(swarm_server: LiveServer) -> Iterator[httpx.Client]:
    with swarm_server.client() as client:
        yield client


def assert_nothing_left(live: LiveServer, run_id: str) -> None:
    """The run's service, config and network are gone (removal follows the recorded end)."""
    wait_for(
        lambda: not any(swarm_objects(instance_of(live), run_id).values()),
        timeout=20,
        what=f"run {run_id}'s service, config and network to be removed",
    )


def test_a_run_succeeds_with_its_whole_log_and_exit_code(
    http: httpx.Client, swarm_server: LiveServer
) -> None:
    script = (
        "import sys\n"
        "for i in range(1, 301):\n"
        "    (sys.stdout if i % 2 else sys.stderr).write(f'line {i}\\n')\n"
        "sys.stdout.write('no newline at the end')\n"
    )
    created = create_task(http, script)
    run = wait_run(http, created["task_id"], created["run_id"])
    assert (run["status"], run["exit_code"], run["error"]) == ("succeeded", 0, None)
    expected = [f"line {i}" for i in range(1, 301)] + ["no newline at the end"]
    assert logs(http, created["task_id"]).splitlines() == expected
    kept = http.get(f"/{created['task_id']}").json()
    assert kept["source"] == "kept"
    info = kept["container"]
    assert info["Executor"] == "swarm"
    assert info["Service"]["Spec"]["Mode"] == {
        "ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}
    }
    assert info["Service"]["Spec"]["Labels"]["taskdash.run_id"] == created["run_id"]
    assert info["Service"]["Spec"]["Labels"]["taskdash.task_id"] == created["task_id"]
    assert info["Service"]["Spec"]["Labels"]["taskdash.instance"] == instance_of(swarm_server)
    assert_nothing_left(swarm_server, created["run_id"])


def test_a_failing_script_ends_failed_with_its_exit_code(
    http: httpx.Client, swarm_server: LiveServer
) -> None:
    created = create_task(http, "echo about to fail\nexit 7\n", kind="sh")
    run = wait_run(http, created["task_id"], created["run_id"])
    assert (run["status"], run["exit_code"]) == ("failed", 7)
    assert logs(http, created["task_id"]) == "about to fail\n"
    assert_nothing_left(swarm_server, created["run_id"])


HARDENING_PROBE = """
import os, socket
print("uid", os.getuid(), os.getgid())
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines())
print("caps", status["CapEff"].strip(), status["CapBnd"].strip())
script = os.stat("/job/main.py")
print("script", oct(script.st_mode & 0o777), script.st_uid)
for path in ("/job/main.py", "/job/extra", "/extra"):
    try:
        open(path, "a").close()
        print("wrote", path)
    except OSError:
        print("refused", path)
open("/tmp/scratch", "w").write("ok")
print("tmp", open("/tmp/scratch").read())
for host in ("1.1.1.1", "172.17.0.1"):
    try:
        socket.create_connection((host, 53), timeout=2).close()
        print("reached", host)
    except OSError:
        print("unreachable", host)
print("probed", flush=True)
import time
time.sleep(60)
"""


def test_a_run_is_hardened_and_its_live_data_is_the_services(
    http: httpx.Client, swarm_server: LiveServer
) -> None:
    created = create_task(http, HARDENING_PROBE, memory_mb=128, cpus=0.5)
    task_id, run_id = created["task_id"], created["run_id"]
    wait_for(lambda: "probed" in logs(http, task_id), timeout=60, what="the probe's report")
    assert logs(http, task_id).splitlines() == [
        "uid 1000 1000",
        "caps 0000000000000000 0000000000000000",
        "script 0o555 0",
        "refused /job/main.py",
        "refused /job/extra",
        "refused /extra",
        "tmp ok",
        "unreachable 1.1.1.1",
        "unreachable 172.17.0.1",
        "probed",
    ]
    live = http.get(f"/{task_id}").json()
    assert live["source"] == "live"
    info = live["container"]
    assert info["Executor"] == "swarm" and info["State"]["Running"]
    spec = info["Service"]["Spec"]["TaskTemplate"]
    assert spec["ContainerSpec"]["ReadOnly"] is True
    assert spec["ContainerSpec"]["CapabilityDrop"] == ["ALL"]
    assert spec["RestartPolicy"]["Condition"] == "none"
    assert spec["Resources"]["Limits"] == {
        "NanoCPUs": 500_000_000,
        "MemoryBytes": 128 * 1024 * 1024,
        "Pids": 256,
    }
    assert "Reservations" not in spec["Resources"]
    # The container is on this engine: its own facts are shown.
    assert info["HostConfig"]["Memory"] == 128 * 1024 * 1024
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["HostConfig"]["CapDrop"] == ["ALL"]
    stopped = http.post(f"/task/{task_id}/stop")
    assert stopped.status_code == 200, stopped.text
    assert wait_run(http, task_id, run_id)["status"] == "stopped"


def test_stop_ends_a_running_run_as_stopped(http: httpx.Client, swarm_server: LiveServer) -> None:
    script = "trap 'echo got TERM; exit 5' TERM\necho waiting\nwhile true; do sleep 0.1; done\n"
    created = create_task(http, script, kind="sh")
    task_id, run_id = created["task_id"], created["run_id"]
    wait_for(lambda: logs(http, task_id) == "waiting\n", timeout=60, what="the run to start")
    began = time.monotonic()
    answered = http.post(f"/task/{task_id}/stop")
    assert answered.status_code == 200, answered.text
    run = wait_run(http, task_id, run_id)
    assert run["status"] == "stopped"
    assert time.monotonic() - began < 15
    assert logs(http, task_id).splitlines() == ["waiting", "got TERM"]
    assert run["exit_code"] in (5, -1)  # -1: the swarm dropped the task before it was read
    assert_nothing_left(swarm_server, run_id)


def test_a_run_past_its_timeout_ends_timed_out(
    http: httpx.Client, swarm_server: LiveServer
) -> None:
    created = create_task(http, "echo start\nsleep 60\n", kind="sh", timeout_seconds=2)
    run = wait_run(http, created["task_id"], created["run_id"], timeout=60)
    assert run["status"] == "timed_out"
    assert "timed out after 2 s" in run["error"]
    assert logs(http, created["task_id"]) == "start\n"
    assert_nothing_left(swarm_server, created["run_id"])


def test_live_lines_reach_an_sse_follower_while_the_run_goes_on(
    http: httpx.Client, swarm_server: LiveServer
) -> None:
    script = 'for i in $(seq 1 8); do echo "line $i"; sleep 0.4; done\nexit 3\n'
    created = create_task(http, script, kind="sh")
    task_id, run_id = created["task_id"], created["run_id"]
    follower = Follower(f"{swarm_server.base_url}/task/{task_id}/logs/stream?run_id={run_id}")
    follower.start()

    def first_line() -> bool:
        return any(event == "line" for event, _, _ in follower.events)

    wait_for(first_line, timeout=60, what="the first live line")
    assert get_run(http, task_id, run_id)["status"] == "running"
    assert follower.thread is not None
    follower.thread.join(timeout=60)
    assert follower.failure is None, follower.failure
    lines = [(number, data) for event, number, data in follower.events if event == "line"]
    assert lines == [(str(i), f"line {i}") for i in range(1, 9)]
    event, _, data = follower.events[-1]
    assert event == "end"
    end: dict[str, Any] = json.loads(data)
    assert (end["status"], end["exit_code"]) == ("failed", 3)


def test_a_run_finishes_whole_after_the_server_is_killed_mid_run(
    swarm_manager: None, tmp_path: Path
) -> None:
    script = 'for i in $(seq 1 30); do echo "line $i"; sleep 0.2; done\n'
    first = start_server(tmp_path / "data")
    try:
        with first.client() as client:
            created = create_task(client, script, kind="sh")
            task_id, run_id = created["task_id"], created["run_id"]
            wait_for(lambda: "line 5\n" in logs(client, task_id), timeout=60, what="lines stored")
        first.kill()
        again = start_server(tmp_path / "data")
        try:
            assert instance_of(again) == instance_of(first)
            with again.client() as client:
                run = wait_run(client, task_id, run_id, timeout=60)
                text = logs(client, task_id)
            assert (run["status"], run["exit_code"]) == ("succeeded", 0), text
            assert text.splitlines() == [f"line {i}" for i in range(1, 31)]
            assert_nothing_left(again, run_id)
        finally:
            again.stop()
    finally:
        first.kill()
        remove_swarm_objects(instance_of(first))


def test_an_image_the_manager_does_not_have_is_an_error_with_its_reason(
    http: httpx.Client, swarm_server: LiveServer
) -> None:
    created = create_task(http, "echo hi\n", kind="sh", image="taskdash/no-such-image:0")
    run = wait_run(http, created["task_id"], created["run_id"])
    assert run["status"] == "error"
    assert "is not on the swarm manager's engine" in run["error"]
    assert_nothing_left(swarm_server, created["run_id"])
