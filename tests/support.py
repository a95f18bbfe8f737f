"""Helpers shared by the tests: a real hypercorn server on a real data dir, and polling."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.databases import database_env

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
TERMINAL = {"succeeded", "failed", "stopped", "timed_out", "error"}


def wait_for(
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
        last = condition()
    return last


def stop_when_parent_dies() -> None:
    """In the child: get SIGTERM if the test process dies, so no server outlives a killed run."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def folder_key(folder: Path) -> str:
    import hashlib

    return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:10]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """`python -m taskdash.serve` (what `make run` runs) in its own process."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKDASH_")}
        env |= {
            "TASKDASH_DATA_DIR": str(self.data_dir),
            # Unique per data folder (not per folder name: many tests name theirs `data`), so
            # one test server never takes another's containers for orphans.
            "TASKDASH_INSTANCE_ID": f"test-{folder_key(self.data_dir)}-{os.getpid()}",
        }
        return env | database_env(self.data_dir) | self.extra_env

    def start(self, *, healthy: bool = True) -> LiveServer:
        return self.start_on("127.0.0.1", healthy=healthy)

    def start_on(self, host: str, *, healthy: bool = True) -> LiveServer:
        """Listen on `host` (the tests still reach it through 127.0.0.1)."""
        return self.launch(host).wait_ready(healthy=healthy)

    def launch(self, host: str = "127.0.0.1") -> LiveServer:
        """Start the process without waiting for it to answer (several starting together)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "taskdash.serve", "--bind", f"{host}:{self.port}"],
            cwd=REPO,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=stop_when_parent_dies,
        )
        return self

    def wait_ready(self, *, healthy: bool = True) -> LiveServer:
        wait_for(
            lambda: self._answers(healthy),
            timeout=60,
            what=f"server on {self.base_url} ({self.log_path})",
        )
        return self

    def _answers(self, healthy: bool) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited: {self.log_path.read_text()[-3000:]}")
        try:
            status = httpx.get(f"{self.base_url}/healthz", timeout=2).status_code
        except httpx.HTTPError:
            return False
        return status == 200 or not healthy

    def stop(self) -> None:
        """A graceful stop (SIGTERM), as a process manager does."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """A crash: SIGKILL to the server's process group, nothing gets to clean up."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if sig is signal.SIGKILL:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)


def replica_server(data_dir: Path, name: str, lease_seconds: float, **env: str) -> LiveServer:
    """One replica of the installation in `data_dir`: its own name and port, a short lease."""
    return LiveServer(
        data_dir,
        env={
            "TASKDASH_REPLICA_ID": name,
            "TASKDASH_REPLICA_LEASE_SECONDS": str(lease_seconds),
            "TASKDASH_RUN_RATE_PER_MINUTE": "0",
        }
        | env,
    )


def make_wheel(directory: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal pure-Python wheel, so requirement builds need no index (hermetic tests)."""
    import base64
    import hashlib
    import zipfile

    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": module_source.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: taskdash-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def create_task(
    client: httpx.Client,
    script: str | bytes,
    *,
    kind: str = "py",
    filename: str | None = None,
    **form: Any,
) -> dict[str, Any]:
    files: dict[str, Any] = {"file": (filename or f"script.{kind}", script)}
    if "requirements" in form:
        files["requirements"] = ("requirements.txt", form.pop("requirements"))
    response = client.post(f"/task/{kind}", files=files, data={k: str(v) for k, v in form.items()})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def get_run(client: httpx.Client, task_id: str, run_id: str) -> dict[str, Any]:
    response = client.get(f"/task/{task_id}/runs/{run_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_run(
    client: httpx.Client,
    task_id: str,
    run_id: str,
    timeout: float = 60.0,
    status: set[str] | None = None,
) -> dict[str, Any]:
    """Poll until the run reaches one of `status` (any terminal state by default)."""
    wanted = status or TERMINAL

    def reached() -> dict[str, Any]:
        run = get_run(client, task_id, run_id)
        return run if run["status"] in wanted else {}

    return wait_for(
        reached, timeout=timeout, interval=0.1, what=f"run {run_id} to reach {sorted(wanted)}"
    )


def logs(client: httpx.Client, task_id: str, run_id: str | None = None) -> str:
    params = {"run_id": run_id} if run_id else {}
    response = client.get(f"/task/{task_id}/logs", params=params)
    assert response.status_code == 200, response.text
    return response.text


def taskdash_cli(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`python -m taskdash ...` against the database in `data_dir`, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKDASH_")}
    env["TASKDASH_DATA_DIR"] = str(data_dir)
    env |= database_env(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "taskdash", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def add_user(data_dir: Path, name: str, password: str, role: str) -> None:
    done = taskdash_cli(
        data_dir, "user", "add", name, "--role", role, "--password-stdin", stdin=password + "\n"
    )
    assert done.returncode == 0, done.stderr


def add_token(data_dir: Path, name: str, role: str, user: str | None = None) -> str:
    owner = ["--user", user] if user else []
    done = taskdash_cli(data_dir, "token", "create", name, "--role", role, *owner)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
