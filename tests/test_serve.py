"""`python -m taskdash.serve` will not put an unauthenticated server on a network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.databases import database_env
from tests.support import REPO, LiveServer, add_user, free_port, wait_for


def serve(data_dir: Path, bind: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "TASKDASH_DATA_DIR": str(data_dir)}
    environment |= database_env(data_dir) | env
    return subprocess.run(
        [sys.executable, "-m", "taskdash.serve", "--bind", bind],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_network_address_without_credentials_is_refused(tmp_path: Path) -> None:
    refused = serve(tmp_path / "data", f"0.0.0.0:{free_port()}")
    assert refused.returncode == 1
    assert "refusing to listen on 0.0.0.0" in refused.stderr
    assert "python -m taskdash user add NAME --role admin" in refused.stderr
    assert "TASKDASH_ALLOW_ANONYMOUS=true" in refused.stderr


def test_with_a_user_it_listens_and_asks_for_credentials(
    docker_engine: None, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    add_user(data, "admin", "correct horse battery", "admin")
    server = LiveServer(data)
    server.start_on("0.0.0.0", healthy=True)
    try:
        assert httpx.get(f"{server.base_url}/task/").status_code == 401
    finally:
        server.stop()


def test_allow_anonymous_serves_everyone_with_a_banner(docker_engine: None, tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", env={"TASKDASH_ALLOW_ANONYMOUS": "true"})
    server.start_on("0.0.0.0", healthy=True)
    try:
        page = wait_for(lambda: httpx.get(f"{server.base_url}/").text, what="the task list")
        assert 'id="anonymous-banner"' in page and "anyone who reaches this server" in page
        assert httpx.get(f"{server.base_url}/task/").status_code == 200
    finally:
        server.stop()
