"""Secret env values: given to the run, never shown again, masked in logs, encrypted at rest."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from typing import Any

import httpx

from tests.databases import stored_bytes
from tests.support import LiveServer, create_task, logs, wait_for, wait_run

SCRIPT = """
import hashlib, os, sys, time
secret = os.environ["API_KEY"]
print("digest", hashlib.sha256(secret.encode()).hexdigest())
print("leaked:", secret)
print(f"inside a line {secret}!")
print("plain", os.environ["GREETING"])
sys.stdout.flush()
time.sleep(float(os.environ.get("HOLD", "0")))
"""


def secret_task(client: httpx.Client, secret: str, **form: Any) -> dict[str, Any]:
    return create_task(
        client,
        SCRIPT,
        env=json.dumps({"GREETING": "hello"}),
        secret_env=f"API_KEY={secret}",
        **form,
    )


def test_a_secret_reaches_the_script_and_nothing_else(
    client: httpx.Client, server: LiveServer
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    created = secret_task(client, secret)
    run = wait_run(client, created["task_id"], created["run_id"])
    assert run["status"] == "succeeded"
    stored = logs(client, created["task_id"])
    assert f"digest {hashlib.sha256(secret.encode()).hexdigest()}" in stored  # it got the value
    assert "leaked: ***" in stored and "inside a line ***!" in stored
    assert "plain hello" in stored
    assert secret not in stored
    detail = client.get(f"/task/{created['task_id']}").json()
    assert detail["secret_env"] == {"API_KEY": "***"} and detail["env"] == {"GREETING": "hello"}
    assert secret not in json.dumps(detail)
    kept = client.get(f"/{created['task_id']}").json()
    assert kept["source"] == "kept" and secret not in json.dumps(kept)
    assert "API_KEY=***" in kept["container"]["Config"]["Env"]
    page = client.get(f"/tasks/{created['task_id']}").text
    assert secret not in page
    database = stored_bytes(server.data_dir)
    assert secret.encode() not in database, "stored encrypted"
    assert secret.encode() not in (server.data_dir / "logs" / f"{run['run_id']}.log").read_bytes()


def test_a_secret_is_masked_live_and_in_the_live_inspect(client: httpx.Client) -> None:
    secret = f"live-{uuid.uuid4().hex}"
    created = secret_task(client, secret, timeout_seconds=60)
    with client.stream("GET", f"/task/{created['task_id']}/logs/stream") as stream:
        seen = ""
        for text in stream.iter_text():
            seen += text
            if "event: end" in seen:
                break
    assert "leaked: ***" in seen and secret not in seen
    held = create_task(
        client,
        SCRIPT,
        env=json.dumps({"GREETING": "hello", "HOLD": "30"}),
        secret_env=json.dumps({"API_KEY": secret}),
    )
    wait_run(client, held["task_id"], held["run_id"], status={"running"})
    live = wait_for(
        lambda: (body := client.get(f"/{held['task_id']}").json())["source"] == "live" and body,
        what="the live inspect",
    )
    assert secret not in json.dumps(live)
    container = live["container"]["Id"]
    engine_view = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True
    ).stdout
    assert secret in engine_view, "the container does have it; only taskdash's answers hide it"
    client.post(f"/task/{held['task_id']}/stop")


def test_bad_secret_input_is_refused(client: httpx.Client) -> None:
    for fields, words in (
        ({"secret_env": "API_KEY=abc"}, "at least 4 characters"),
        ({"secret_env": "not a pair"}, "NAME=value"),
        ({"secret_env": "1BAD=value1"}, "invalid variable name"),
        ({"env": '{"A": "x"}', "secret_env": '{"A": "long enough"}'}, "both in 'env'"),
    ):
        response = client.post("/task/sh", files={"file": ("a.sh", b"echo hi")}, data=fields)
        assert response.status_code == 400, response.text
        assert words in response.json()["error"]["message"]
