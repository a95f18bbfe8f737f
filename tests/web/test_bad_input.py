"""Bad input gets the one JSON error shape with the right status, and changes nothing stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support import create_task, logs, wait_run

UNKNOWN = str(uuid.uuid4())


def assert_error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "status"}
    assert error["status"] == status
    for word in words:
        assert word in error["message"], error["message"]
    assert "Traceback" not in response.text
    return dict(error)


def task_count(client: httpx.Client) -> int:
    return int(client.get("/task/", params={"limit": 1}).headers["X-Total-Count"])


@pytest.fixture()
def unchanged(client: httpx.Client):  # type: ignore[no-untyped-def]
    """Creates a task with a log, and checks after the test that it and the count are intact."""
    created = create_task(client, "echo keep me\n", kind="sh")
    wait_run(client, created["task_id"], created["run_id"])
    before = task_count(client)
    yield created
    assert task_count(client) == before
    assert logs(client, created["task_id"]) == "keep me\n"
    assert client.get(f"/task/{created['task_id']}").json()["status"] == "succeeded"


CREATE_CASES = [
    pytest.param({}, {}, 400, ["'file' is required"], id="missing-file"),
    pytest.param({"file": ("a.py", b"")}, {}, 400, ["empty"], id="empty-file"),
    pytest.param({"file": ("a.py", b"  \n\n")}, {}, 400, ["empty"], id="blank-file"),
    pytest.param(
        {"file": ("a.py", b"print(1)")}, {"upload": "maybe"}, 400, ["'upload'"], id="bad-flag"
    ),
    pytest.param(
        {"file": ("a.py", b"print(1)")}, {"timeout_seconds": "soon"}, 400,
        ["'timeout_seconds' must be a float"], id="bad-timeout",
    ),
    pytest.param(
        {"file": ("a.py", b"print(1)")}, {"memory_mb": "1"}, 400, ["between"], id="tiny-memory"
    ),
    pytest.param(
        {"file": ("a.py", b"print(1)")}, {"env": "[1, 2]"}, 400, ["JSON object"], id="env-list"
    ),
    pytest.param(
        {"file": ("a.py", b"print(1)")}, {"env": '{"1BAD": "x"}'}, 400, ["variable name"],
        id="env-bad-name",
    ),
    pytest.param(
        {"file": ("a.py", b"print(1)")}, {"image": "has space"}, 400, ["image"], id="bad-image"
    ),
    pytest.param(
        {"file": ("a.py", b"print(1)"), "other": ("x", b"x")}, {}, 400, ["unexpected"],
        id="unknown-file-field",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("files", "data", "status", "words"), CREATE_CASES)
def test_bad_create_requests(
    client: httpx.Client,
    unchanged: dict[str, Any],
    files: dict[str, Any],
    data: dict[str, str],
    status: int,
    words: list[str],
) -> None:
    body = files or {"placeholder": ""}
    if files:
        response = client.post("/task/py", files=files, data=data)
    else:
        response = client.post("/task/py", data=body)
    assert_error(response, status, *words)


def test_requirements_on_a_shell_task(client: httpx.Client, unchanged: dict[str, Any]) -> None:
    response = client.post(
        "/task/sh", files={"file": ("a.sh", b"echo"), "requirements": ("r.txt", b"six\n")}
    )
    assert_error(response, 400, "only applies to python")


def test_script_over_the_limit_is_413_with_the_limit(
    client: httpx.Client, unchanged: dict[str, Any]
) -> None:
    big = b"#" * (1024 * 1024 + 1)
    error = assert_error(client.post("/task/py", files={"file": ("big.py", big)}), 413, "1048576")
    assert error["code"] == "payload_too_large"


def test_request_far_over_the_limit_is_413(client: httpx.Client, unchanged: dict[str, Any]) -> None:
    huge = b"#" * (5 * 1024 * 1024)
    assert_error(client.post("/task/py", files={"file": ("huge.py", huge)}), 413, "limit")


def test_wrong_content_type_is_415(client: httpx.Client, unchanged: dict[str, Any]) -> None:
    response = client.post("/task/py", json={"file": "print(1)"})
    assert_error(response, 415, "multipart/form-data")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/task/{id}"),
        ("PUT", "/task/{id}"),
        ("DELETE", "/task/{id}"),
        ("POST", "/task/{id}/stop"),
        ("GET", "/task/{id}/runs"),
        ("GET", "/task/{id}/logs"),
        ("GET", "/{id}"),
    ],
)
def test_unknown_and_malformed_task_ids(
    client: httpx.Client, unchanged: dict[str, Any], method: str, path: str
) -> None:
    error = assert_error(client.request(method, path.format(id=UNKNOWN)), 404, UNKNOWN)
    assert error["code"] == "task_not_found"
    error = assert_error(client.request(method, path.format(id="not-a-uuid")), 400, "not-a-uuid")
    assert error["code"] == "malformed_id"


def test_unknown_and_malformed_run_ids(client: httpx.Client, unchanged: dict[str, Any]) -> None:
    task_id = unchanged["task_id"]
    assert_error(client.get(f"/task/{task_id}/runs/{UNKNOWN}"), 404, UNKNOWN)
    assert_error(client.get(f"/task/{task_id}/logs", params={"run_id": UNKNOWN}), 404, UNKNOWN)
    assert_error(client.get(f"/task/{task_id}/runs/12"), 400, "run id")


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"limit": "abc"}, {"offset": "-1"}, {"limit": "100000"}]
)
def test_bad_pagination(
    client: httpx.Client, unchanged: dict[str, Any], query: dict[str, str]
) -> None:
    assert_error(client.get("/task/", params=query), 400)


def test_unknown_route_and_method(client: httpx.Client, unchanged: dict[str, Any]) -> None:
    assert_error(client.get("/no/such/page"), 404, "no such endpoint")
    assert_error(client.patch("/task/py"), 405, "PATCH")
