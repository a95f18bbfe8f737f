"""Operator limits: maxima per task, allowed images, runs per minute, the queue's length."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import create_task, wait_for, wait_run


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("timeout_seconds", "100000", "TASKDASH_MAX_RUN_TIMEOUT_SECONDS"),
        ("memory_mb", "5000", "TASKDASH_MAX_RUN_MEMORY_MB"),
        ("cpus", "64", "TASKDASH_MAX_RUN_CPUS"),
    ],
)
def test_a_task_asking_more_than_the_maximum_is_refused(
    client: httpx.Client, field: str, value: str, variable: str
) -> None:
    before = client.get("/task/", params={"limit": 1}).headers["X-Total-Count"]
    response = client.post("/task/sh", files={"file": ("a.sh", b"echo hi")}, data={field: value})
    error = error_of(response, 400)
    assert error["code"] == "over_limit"
    assert variable in error["message"] and f"'{field}' may be at most" in error["message"]
    assert client.get("/task/", params={"limit": 1}).headers["X-Total-Count"] == before


def test_only_allowed_images_may_be_named(make_server: Any) -> None:
    server = make_server(allowed_images="taskdash/shell:*,registry.local/*")
    with server.client() as client:
        refused = client.post(
            "/task/sh", files={"file": ("a.sh", b"echo hi")}, data={"image": "alpine:3"}
        )
        error = error_of(refused, 400)
        assert error["code"] == "image_not_allowed"
        assert "taskdash/shell:*, registry.local/*" in error["message"]
        allowed = create_task(client, "echo allowed\n", kind="sh", image="taskdash/shell:bookworm")
        assert wait_run(client, allowed["task_id"], allowed["run_id"])["status"] == "succeeded"
        default = create_task(client, "print('default image')\n")  # defaults are always allowed
        assert wait_run(client, default["task_id"], default["run_id"])["status"] == "succeeded"


def test_runs_per_minute_are_limited_per_caller(make_server: Any) -> None:
    server = make_server(run_rate_per_minute="2")
    with server.client() as client:
        created = create_task(client, "echo once\n", kind="sh")
        assert client.put(f"/task/{created['task_id']}").status_code == 202
        third = client.put(f"/task/{created['task_id']}")
        error = error_of(third, 429)
        assert error["code"] == "run_rate_limited"
        assert 0 < int(third.headers["Retry-After"]) <= 60
        assert "TASKDASH_RUN_RATE_PER_MINUTE" in error["message"]
        runs = client.get(f"/task/{created['task_id']}/runs").headers["X-Total-Count"]
        assert runs == "2"


def test_a_full_queue_refuses_new_runs_until_it_drains(make_server: Any) -> None:
    server = make_server(max_concurrent_runs="1", max_queued_runs="1")
    with server.client() as client:
        blocker = create_task(client, "sleep 30\n", kind="sh")
        wait_run(client, blocker["task_id"], blocker["run_id"], status={"running"})
        waiting = create_task(client, "echo queued\n", kind="sh")
        full = client.post("/task/sh", files={"file": ("a.sh", b"echo more")})
        error = error_of(full, 503)
        assert error["code"] == "queue_full" and full.headers["Retry-After"]
        assert client.post(f"/task/{blocker['task_id']}/stop").status_code == 200
        wait_run(client, waiting["task_id"], waiting["run_id"])
        wait_for(
            lambda: (
                client.post("/task/sh", files={"file": ("a.sh", b"echo now")}).status_code == 201
            ),
            what="a run accepted once the queue drained",
        )
