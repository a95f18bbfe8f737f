"""End to end: a real server and Docker; a `* * * * *` schedule fires after a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support import LiveServer, create_task, logs, wait_for, wait_run


def scheduled_runs(client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/task/{task_id}/runs", params={"limit": 100})
    assert response.status_code == 200, response.text
    return [run for run in response.json() if run["trigger"] == "schedule"]


def test_every_minute_schedule_fires_after_a_restart(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    first = make_server(data_dir=data_dir)
    with first.client() as client:
        created = create_task(client, "echo tick\n", kind="sh")
        task_id = created["task_id"]
        wait_run(client, task_id, created["run_id"])
        response = client.post(f"/task/{task_id}/schedule", data={"cron_expression": "* * * * *"})
        assert response.status_code == 201, response.text
    first.stop()

    restarted_at = datetime.now(UTC)
    second = make_server(data_dir=data_dir)
    with second.client() as client:
        assert client.get(f"/task/{task_id}/schedule").json()["cron_expression"] == "* * * * *"
        fired = wait_for(
            lambda: [
                run
                for run in scheduled_runs(client, task_id)
                if datetime.fromisoformat(run["queued_at"]) >= restarted_at
            ],
            timeout=90,
            interval=0.5,
            what="a scheduled run after the restart",
        )
        run = wait_run(client, task_id, fired[-1]["run_id"])
        assert run["status"] == "succeeded"
        assert run["scheduled_for"] is not None
        slot = datetime.fromisoformat(run["scheduled_for"])
        assert slot.second == 0 and slot.microsecond == 0
        assert logs(client, task_id, run["run_id"]) == "tick\n"
        recent = client.get(f"/task/{task_id}/schedule").json()["recent_slots"]
        assert any(s["run_id"] == run["run_id"] and s["outcome"] == "fired" for s in recent)
