"""The /task/<task_id>/schedule routes over HTTP on a real server: shapes and bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import create_task, wait_run

MISSING = "3f2c1d7e-8a9b-4c5d-9e0f-1a2b3c4d5e6f"


@pytest.fixture()
def task_id(client: httpx.Client) -> str:
    created = create_task(client, "echo scheduled\n", kind="sh")
    wait_run(client, created["task_id"], created["run_id"])
    return str(created["task_id"])


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["status"] == status
    return body


def test_set_show_pause_resume_and_delete(client: httpx.Client, task_id: str) -> None:
    url = f"/task/{task_id}/schedule"
    assert error_of(client.get(url), 404)["code"] == "schedule_not_found"

    created = client.post(url, data={"cron_expression": "0 9 * * 1-5", "timezone": "Europe/Paris"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["cron_expression"] == "0 9 * * 1-5"
    assert (body["timezone"], body["enabled"], body["overlap"]) == ("Europe/Paris", True, "skip")
    assert len(body["next_run_times"]) == len(body["next_run_times_utc"]) == 5
    assert body["next_run_times"][0].endswith(("+01:00", "+02:00"))
    assert body["next_run_times_utc"][0].endswith("Z")
    assert client.get(url).json() == body
    assert client.get(f"/task/{task_id}").json()["schedule"] == body

    paused = client.patch(url, json={"enabled": False})
    assert paused.status_code == 200, paused.text
    assert paused.json()["enabled"] is False
    assert paused.json()["next_run_at"] is None and paused.json()["next_run_times"] == []

    # Setting it again changes what it names and keeps the rest: it stays paused, in Paris.
    changed = client.post(url, json={"cron_expression": "@hourly", "overlap": "queue"})
    assert changed.status_code == 200
    assert (changed.json()["enabled"], changed.json()["overlap"]) == (False, "queue")
    assert changed.json()["timezone"] == "Europe/Paris"
    assert changed.json()["next_run_times"] == []

    resumed = client.post(url, json={"cron_expression": "@hourly", "enabled": True})
    assert resumed.status_code == 200
    assert (resumed.json()["enabled"], resumed.json()["overlap"]) == (True, "queue")
    assert resumed.json()["next_run_times_utc"][0].endswith(":00:00Z")

    deleted = client.delete(url)
    assert deleted.status_code == 200
    assert deleted.json() == {"message": "Schedule removed", "task_id": task_id}
    assert client.get(url).status_code == 404
    assert client.get(f"/task/{task_id}").json()["schedule"] is None


def test_a_json_body_takes_the_same_keys(client: httpx.Client, task_id: str) -> None:
    response = client.post(
        f"/task/{task_id}/schedule",
        json={"cron_expression": "*/5 * * * *", "timezone": "Asia/Tokyo", "enabled": "false"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["timezone"] == "Asia/Tokyo"
    assert response.json()["enabled"] is False
    client.delete(f"/task/{task_id}/schedule")


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({}, "missing_cron", "cron_expression"),
        ({"cron_expression": "  "}, "missing_cron", "required"),
        ({"cron_expression": "* * *"}, "invalid_cron", "has 3 field(s)"),
        ({"cron_expression": "61 * * * *"}, "invalid_cron", "minute field '61'"),
        ({"cron_expression": "0 0 30 2 *"}, "invalid_cron", "never fires"),
        ({"cron_expression": "@reboot"}, "invalid_cron", "unknown macro"),
        ({"cron_expression": "@daily", "timezone": "Mars/Base"}, "invalid_timezone", "Mars"),
        ({"cron_expression": "@daily", "enabled": "maybe"}, "bad_request", "true or false"),
        ({"cron_expression": "@daily", "overlap": "replace"}, "bad_request", "skip, queue"),
        ({"cron_expression": "@daily", "colour": "red"}, "unexpected_field", "colour"),
    ],
)
def test_bad_form_input(
    client: httpx.Client, task_id: str, fields: dict[str, str], code: str, says: str
) -> None:
    error = error_of(client.post(f"/task/{task_id}/schedule", data=fields), 400)
    assert error["code"] == code
    assert says in error["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([1, 2], "must be an object"),
        ({"cron_expression": 5}, "must be a string"),
        ({"cron_expression": "@daily", "enabled": 3}, "true or false"),
    ],
)
def test_bad_json_input(client: httpx.Client, task_id: str, body: object, says: str) -> None:
    error = error_of(client.post(f"/task/{task_id}/schedule", json=body), 400)
    assert says in error["message"]


def test_broken_json_and_other_content_types(client: httpx.Client, task_id: str) -> None:
    url = f"/task/{task_id}/schedule"
    broken = client.post(url, content=b"{nope", headers={"Content-Type": "application/json"})
    assert "object" in error_of(broken, 400)["message"]
    plain = client.post(url, content=b"* * * * *", headers={"Content-Type": "text/plain"})
    assert error_of(plain, 415)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
def test_every_route_refuses_bad_and_unknown_ids(client: httpx.Client, method: str) -> None:
    data = {"cron_expression": "@daily"} if method in ("POST", "PATCH") else None
    malformed = client.request(method, "/task/not-a-uuid/schedule", data=data)
    assert error_of(malformed, 400)["code"] == "malformed_id"
    unknown = client.request(method, f"/task/{MISSING}/schedule", data=data)
    assert error_of(unknown, 404)["code"] == "task_not_found"


def test_patch_and_delete_without_a_schedule(client: httpx.Client, task_id: str) -> None:
    url = f"/task/{task_id}/schedule"
    assert error_of(client.patch(url, json={"enabled": True}), 404)["code"] == "schedule_not_found"
    assert error_of(client.delete(url), 404)["code"] == "schedule_not_found"


def test_patch_needs_something_to_change(client: httpx.Client, task_id: str) -> None:
    url = f"/task/{task_id}/schedule"
    client.post(url, data={"cron_expression": "@daily"})
    assert "nothing to change" in error_of(client.patch(url, json={}), 400)["message"]
    bad = client.patch(url, json={"cron_expression": "* * * * * *"})
    assert error_of(bad, 400)["code"] == "invalid_cron"
    client.delete(url)


def test_a_task_whose_script_was_not_kept_answers_409(client: httpx.Client) -> None:
    created = create_task(client, "echo once\n", kind="sh", upload="false")
    response = client.post(
        f"/task/{created['task_id']}/schedule", data={"cron_expression": "* * * * *"}
    )
    error = error_of(response, 409)
    assert error["code"] == "script_not_kept"
    assert "upload" in error["message"]


def test_the_routes_are_in_the_openapi_document(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    operations = paths["/task/{task_id}/schedule"]
    assert {"get", "post", "patch", "delete"} <= set(operations)
    assert operations["post"]["summary"]
