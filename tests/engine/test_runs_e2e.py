"""Runs through the real API, server and Docker engine: every state and the seed's flows."""

from __future__ import annotations

import subprocess

import httpx

from tests.support import create_task, get_run, logs, wait_for, wait_run


def test_python_task_runs_and_keeps_its_log(client: httpx.Client) -> None:
    created = create_task(client, 'import sys\nprint("hello")\nprint("oops", file=sys.stderr)\n')
    assert created["script_type"] == "python"
    assert created["message"] == "Task created and started"
    run = wait_run(client, created["task_id"], created["run_id"])
    assert run["status"] == "succeeded"
    assert run["exit_code"] == 0
    assert run["trigger"] == "api"
    assert run["started_at"] and run["finished_at"]
    assert logs(client, created["task_id"]).splitlines() == ["hello", "oops"]


def test_shell_task_with_and_without_shebang(client: httpx.Client) -> None:
    plain = create_task(client, "echo plain $((1+2))\n", kind="sh")
    bash = create_task(client, "#!/bin/bash\necho ${BASH_VERSION:+bash}\n", kind="sh")
    assert plain["script_type"] == "shell"
    for created, expected in ((plain, "plain 3"), (bash, "bash")):
        run = wait_run(client, created["task_id"], created["run_id"])
        assert run["status"] == "succeeded", logs(client, created["task_id"])
        assert logs(client, created["task_id"]).strip() == expected


def test_interleaved_stdout_and_stderr_keep_their_order(client: httpx.Client) -> None:
    script = (
        "import sys\n"
        "for i in range(6):\n"
        "    (sys.stdout if i % 2 else sys.stderr).write(f'{i}\\n')\n"
    )
    created = create_task(client, script)
    wait_run(client, created["task_id"], created["run_id"])
    assert logs(client, created["task_id"]).split() == [str(i) for i in range(6)]


def test_nonzero_exit_is_failed(client: httpx.Client) -> None:
    created = create_task(client, "exit 3\n", kind="sh")
    run = wait_run(client, created["task_id"], created["run_id"])
    assert (run["status"], run["exit_code"]) == ("failed", 3)


def test_timeout_kills_the_container(client: httpx.Client) -> None:
    created = create_task(client, "echo start\nsleep 60\n", kind="sh", timeout_seconds=1)
    run = wait_run(client, created["task_id"], created["run_id"], timeout=30)
    assert run["status"] == "timed_out"
    assert "timed out after 1 s" in run["error"]
    assert logs(client, created["task_id"]).strip() == "start"


def test_missing_image_is_an_error_with_its_reason(client: httpx.Client) -> None:
    created = create_task(client, "echo hi\n", kind="sh", image="taskdash/no-such-image:0")
    run = wait_run(client, created["task_id"], created["run_id"])
    assert run["status"] == "error"
    assert "taskdash/no-such-image:0" in run["error"]
    assert run["exit_code"] is None


def test_stop_a_running_task(client: httpx.Client) -> None:
    created = create_task(client, "echo started\nsleep 120\n", kind="sh")
    task_id = created["task_id"]
    wait_for(lambda: logs(client, task_id).strip() == "started", what="the script to start")
    response = client.post(f"/task/{task_id}/stop")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stopped"
    assert get_run(client, task_id, created["run_id"])["status"] == "stopped"
    again = client.post(f"/task/{task_id}/stop")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_running"


def test_rerun_with_put_creates_a_second_run(client: httpx.Client) -> None:
    created = create_task(client, "echo again\n", kind="sh")
    task_id = created["task_id"]
    wait_run(client, task_id, created["run_id"])
    response = client.put(f"/task/{task_id}")
    assert response.status_code == 202
    second = response.json()["run_id"]
    assert second != created["run_id"]
    assert wait_run(client, task_id, second)["status"] == "succeeded"
    runs = client.get(f"/task/{task_id}/runs")
    assert runs.headers["X-Total-Count"] == "2"
    assert [r["run_id"] for r in runs.json()] == [second, created["run_id"]]
    first_log = logs(client, task_id, created["run_id"])
    assert first_log == logs(client, task_id, second) == "again\n"


def test_upload_false_runs_once_without_keeping_the_script(client: httpx.Client) -> None:
    created = create_task(client, "print('streamed')\n", upload="false")
    assert created["upload"] is False
    task_id = created["task_id"]
    assert wait_run(client, task_id, created["run_id"])["status"] == "succeeded"
    assert logs(client, task_id) == "streamed\n"
    detail = client.get(f"/task/{task_id}").json()
    assert detail["script_kept"] is False
    rerun = client.put(f"/task/{task_id}")
    assert rerun.status_code == 409
    assert "upload" in rerun.json()["error"]["message"]
    schedule = client.post(f"/task/{task_id}/schedule", data={"cron_expression": "* * * * *"})
    assert schedule.status_code == 409


def test_docker_info_is_live_while_running_and_kept_after(client: httpx.Client) -> None:
    created = create_task(client, "echo up\nsleep 120\n", kind="sh")
    task_id = created["task_id"]
    wait_for(lambda: logs(client, task_id).strip() == "up", what="the script to start")
    live = client.get(f"/{task_id}").json()
    assert live["source"] == "live"
    assert live["container"]["State"]["Running"] is True
    client.post(f"/task/{task_id}/stop")
    kept = client.get(f"/{task_id}").json()
    assert kept["source"] == "kept"
    assert kept["run_id"] == created["run_id"]
    assert kept["container"]["State"]["Running"] is False
    container_id = kept["container"]["Id"]
    gone = subprocess.run(["docker", "inspect", container_id], capture_output=True)
    assert gone.returncode != 0, "the container should be removed after the run"


def test_delete_stops_the_run_and_removes_everything(client: httpx.Client) -> None:
    created = create_task(client, "echo alive\nsleep 120\n", kind="sh")
    task_id = created["task_id"]
    wait_for(lambda: logs(client, task_id).strip() == "alive", what="the script to start")
    container_id = client.get(f"/{task_id}").json()["container"]["Id"]
    response = client.delete(f"/task/{task_id}")
    assert response.status_code == 200
    assert response.json()["task_id"] == task_id
    assert client.get(f"/task/{task_id}").status_code == 404
    assert client.get(f"/task/{task_id}/logs").status_code == 404
    assert subprocess.run(["docker", "inspect", container_id], capture_output=True).returncode
    assert task_id not in [t["task_id"] for t in client.get("/task/?limit=1000").json()]


def test_list_is_newest_first_and_paginated(client: httpx.Client) -> None:
    ids = [
        create_task(client, f"echo {i}\n", kind="sh", name=f"page-{i}")["task_id"] for i in range(3)
    ]
    first = client.get("/task/", params={"limit": 2})
    assert first.status_code == 200
    total = int(first.headers["X-Total-Count"])
    assert total >= 3
    assert [t["task_id"] for t in first.json()] == ids[::-1][:2]
    second = client.get("/task/", params={"limit": 2, "offset": 2}).json()
    assert second[0]["task_id"] == ids[0]
    item = first.json()[0]
    assert {"task_id", "status", "script_type", "name", "created_at", "last_run"} <= item.keys()
    assert item["name"] == "page-2"


def test_health_and_openapi(client: httpx.Client) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["database"] == "ok"
    assert health.json()["docker"].startswith("ok")
    spec = client.get("/openapi.json").json()
    for path in ("/task/py", "/task/sh", "/task/", "/task/{task_id}", "/task/{task_id}/stop"):
        assert path in spec["paths"], path
