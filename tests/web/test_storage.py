"""The storage figures through a real server: the task list's card and GET /storage."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

from taskdash.web.storage import format_size
from tests.support import LiveServer, add_token, bearer, create_task, wait_for, wait_run


def measured(client: httpx.Client, headers: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/storage", headers=headers).json()
    return body if body["measured_at"] else {}


def test_the_storage_card_and_json_show_the_logs_and_the_last_pass(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(retention_every_seconds="0.2")
    with live.client() as client:
        created = create_task(client, "echo stored\n", kind="sh")
        wait_run(client, created["task_id"], created["run_id"])
        log_bytes = (live.data_dir / "logs" / f"{created['run_id']}.log").stat().st_size
        secret = add_token(live.data_dir, "reader", "viewer")
        viewer = bearer(secret)

        assert client.get("/storage").status_code == 401
        body = wait_for(
            lambda: (found := measured(client, viewer)) and found["logs"]["files"] == 1 and found,
            timeout=30,
            what="a measure that counts the run's log",
        )
        page = client.get("/", headers=viewer).text

    assert body["logs"] == {"files": 1, "bytes": log_bytes}
    assert body["deps_images"] is not None  # the engine answered
    retention = body["retention"]
    assert retention["passes"] >= 1
    assert retention["rules"] == {
        "retention_days": 90.0,
        "keep_runs_per_task": 500,
        "deps_unused_days": 30.0,
        "every_seconds": 0.2,
    }
    assert retention["last_pass"]["pruned"]["runs"] == 0
    card = re.search(r'<section aria-labelledby="storage-title".*?</section>', page, re.S)
    assert card is not None, page
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", card.group(0)))
    assert "Storage" in text
    assert f"Run logs {format_size(log_bytes)} in 1 file " in text
    assert "Requirements images none" in text and "Retention ran " in text
    assert "runs of the last 90 days, at most 500 per task; images used in the last 30 days" in text


def test_sizes_are_written_for_people() -> None:
    assert [format_size(n) for n in (0, 999, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B",
        "999 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]
