"""Crashes and restarts: runs survive a kill -9 of the server, nothing is left orphaned."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from tests.support import LiveServer, create_task, get_run, logs, wait_for, wait_run

COUNTER = "import time\nfor i in range(1, 41):\n    print('line', i)\n    time.sleep(0.1)\n"


def test_kill_9_mid_run_then_restart_completes_with_the_whole_log(
    make_server: Callable[..., LiveServer],
) -> None:
    first = make_server()
    with first.client() as http:
        created = create_task(http, COUNTER)
        task_id, run_id = created["task_id"], created["run_id"]
        wait_for(lambda: "line 5" in logs(http, task_id), what="some output before the crash")
    first.kill()

    second = make_server(
        data_dir=first.data_dir, instance_id=first.environment()["TASKDASH_INSTANCE_ID"]
    )
    with second.client() as http:
        run = wait_run(http, task_id, run_id, timeout=60)
        text = logs(http, task_id)
    assert run["status"] == "succeeded"
    assert text.splitlines() == [f"line {i}" for i in range(1, 41)]
    assert run["log_lines"] == 40


def test_run_whose_container_vanished_during_the_crash_is_an_error(
    make_server: Callable[..., LiveServer],
) -> None:
    first = make_server()
    with first.client() as http:
        created = create_task(http, "echo up\nsleep 120\n", kind="sh")
        task_id, run_id = created["task_id"], created["run_id"]
        wait_for(lambda: logs(http, task_id).strip() == "up", what="the script to start")
        container_id = http.get(f"/{task_id}").json()["container"]["Id"]
    first.kill()
    subprocess.run(["docker", "rm", "-f", container_id], check=True, capture_output=True)

    second = make_server(
        data_dir=first.data_dir, instance_id=first.environment()["TASKDASH_INSTANCE_ID"]
    )
    with second.client() as http:
        run = get_run(http, task_id, run_id)
        assert logs(http, task_id).strip() == "up"
    assert run["status"] == "error"
    assert "container disappeared" in run["error"]


def test_orphan_containers_of_this_instance_are_removed_at_start(
    make_server: Callable[..., LiveServer],
) -> None:
    first = make_server()
    instance = first.environment()["TASKDASH_INSTANCE_ID"]
    first.stop()
    orphan = subprocess.run(
        [
            "docker", "run", "-d", "--network", "none",
            "--label", f"taskdash.instance={instance}",
            "--label", "taskdash.role=run",
            "--label", "taskdash.run_id=00000000-0000-0000-0000-000000000000",
            "taskdash/shell:bookworm", "sleep", "300",
        ],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    make_server(data_dir=first.data_dir, instance_id=instance)
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", f"id={orphan}"],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert listed == ""


def test_concurrency_limit_queues_runs_in_order(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(max_concurrent_runs="1")
    with live.client() as http:
        blocker = create_task(http, "echo first\nsleep 120\n", kind="sh")
        wait_for(lambda: logs(http, blocker["task_id"]).strip() == "first", what="first run")
        queued = [create_task(http, f"echo {i}\n", kind="sh") for i in range(2)]
        for created in queued:
            assert get_run(http, created["task_id"], created["run_id"])["status"] == "queued"
        http.post(f"/task/{blocker['task_id']}/stop")
        finished = [wait_run(http, c["task_id"], c["run_id"]) for c in queued]
    assert [r["status"] for r in finished] == ["succeeded", "succeeded"]
    assert finished[0]["started_at"] <= finished[1]["started_at"]
    assert finished[0]["finished_at"] <= finished[1]["started_at"]


def test_queued_runs_stay_queued_across_a_stop_and_run_after_the_restart(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(max_concurrent_runs="1")
    with live.client() as http:
        blocker = create_task(http, "echo first\nsleep 3\n", kind="sh")
        wait_for(lambda: logs(http, blocker["task_id"]).strip() == "first", what="first run")
        queued = [create_task(http, f"echo {i}\n", kind="sh") for i in range(3)]
    live.stop()  # SIGTERM with one run holding the only slot and three waiting for it
    assert "Traceback" not in live.log_path.read_text()
    restarted = make_server(max_concurrent_runs="1", data_dir=live.data_dir)
    with restarted.client() as http:
        finished = [wait_run(http, c["task_id"], c["run_id"]) for c in queued]
        assert wait_run(http, blocker["task_id"], blocker["run_id"])["status"] == "succeeded"
    assert [r["status"] for r in finished] == ["succeeded"] * 3
    assert [r["error"] for r in finished] == [None] * 3


def test_stop_a_queued_run(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(max_concurrent_runs="1")
    with live.client() as http:
        blocker = create_task(http, "echo first\nsleep 120\n", kind="sh")
        waiting = create_task(http, "echo never\n", kind="sh")
        stopped = http.post(f"/task/{waiting['task_id']}/stop")
        assert stopped.status_code == 200
        assert stopped.json()["status"] == "stopped"
        assert stopped.json()["started_at"] is None
        http.post(f"/task/{blocker['task_id']}/stop")
        assert logs(http, waiting["task_id"]) == ""


def test_stored_log_is_capped_and_marked_truncated(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(log_max_bytes="4096")
    with live.client() as http:
        created = create_task(http, "for i in range(100000):\n    print('x' * 70, i)\n")
        run = wait_run(http, created["task_id"], created["run_id"], timeout=60)
        text = logs(http, created["task_id"])
    assert run["status"] == "succeeded"
    assert run["log_truncated"] is True
    assert len(text.encode()) <= 4096
    assert text.splitlines()[-1].startswith("[taskdash] log truncated")


def test_health_is_503_with_the_reason_when_the_engine_is_away(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(healthy=False, docker_url="unix:///nonexistent/docker.sock")
    with live.client() as http:
        response = http.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert "Docker engine does not answer" in body["docker"]
