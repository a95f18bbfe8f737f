"""Faults survived, nothing lost: the Docker engine going away and coming back, the server
killed at every step of a run's life or stopped with runs in flight, deadlines that pass while
nobody watches, output faster than the server reads it.

Tests that stop the engine use a private one (tests/engine/private_engine.py), never the
shared engine the rest of the suite runs on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from taskdash.core.models import RunStatus
from taskdash.engine.docker import DockerEngine, EngineUnavailable
from taskdash.engine.outcome import SIGNALLED, STOPPED_WITH_ENGINE, run_outcome
from taskdash.engine.spec import ContainerSpec
from taskdash.engine.supervisor import CONTAINER_GONE, ENDED_UNSEEN_NOTE, REQUEUED_NOTE
from taskdash.engine.watch import LOST
from tests.conftest import require
from tests.engine.private_engine import PrivateEngine, missing_tools
from tests.support import (
    LiveServer,
    create_task,
    get_run,
    logs,
    make_wheel,
    wait_for,
    wait_run,
)

SHELL_IMAGE = "taskdash/shell:bookworm"


def counting(count: int, pause: float = 0.1, then: str = "") -> str:
    """A shell script printing `line 1` to `line <count>`, one every `pause` seconds."""
    return (
        f'i=0\nwhile [ $i -lt {count} ]; do\n  i=$((i+1))\n  echo "line $i"\n'
        f"  sleep {pause}\ndone\n{then}"
    )


def numbered(count: int) -> list[str]:
    return [f"line {i}" for i in range(1, count + 1)]


def script_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("line ")]


def instance_of(live: LiveServer) -> str:
    return live.environment()["TASKDASH_INSTANCE_ID"]


def restart(make_server: Callable[..., LiveServer], first: LiveServer, **env: str) -> LiveServer:
    """A new server process on the first one's data and instance."""
    return make_server(data_dir=first.data_dir, instance_id=instance_of(first), **env)


def shared_containers(*labels: str) -> list[str]:
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    found = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", *filters], capture_output=True, text=True, check=True
    )
    return found.stdout.split()


def running_on_shared(container_id: str) -> bool:
    state = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", container_id],
        capture_output=True,
        text=True,
    )
    return state.stdout.strip() == "true"


def pid_alive(pid: int) -> bool:
    return pid > 0 and Path(f"/proc/{pid}").exists()


def runs_of(http: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/task/{task_id}/runs")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


@pytest.fixture()
def private_engines() -> Iterator[Callable[..., PrivateEngine]]:
    """Private Docker engines, each closed (containers, daemon, containerd, folder) after the
    test. Ask for this fixture before make_server: the servers then stop first."""
    reason = missing_tools()
    require(reason is None, reason or "")
    started: list[PrivateEngine] = []

    def start(*, live_restore: bool, image: str | None = SHELL_IMAGE) -> PrivateEngine:
        engine = PrivateEngine(live_restore=live_restore)
        started.append(engine)
        engine.start()
        if image is not None:
            engine.load_image(image)
        return engine

    yield start
    for engine in started:
        engine.close()


# pure: the outcome of a container's end -----------------------------------------------------------


def inspected(exit_code: int, ran: float, *, oom: bool = False) -> dict[str, Any]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(seconds=ran)
    return {
        "State": {
            "Running": False,
            "ExitCode": exit_code,
            "OOMKilled": oom,
            "StartedAt": start.isoformat().replace("+00:00", ".123456789Z"),
            "FinishedAt": end.isoformat().replace("+00:00", "Z"),
        }
    }


@pytest.mark.parametrize(
    ("exit_code", "info", "flags", "status", "reason"),
    [
        (0, inspected(0, 2), {}, RunStatus.SUCCEEDED, None),
        (3, inspected(3, 2), {}, RunStatus.FAILED, None),
        # Killed at its deadline.
        (137, inspected(137, 10.2), {"deadline_passed": True}, RunStatus.TIMED_OUT, "timed out"),
        # The deadline passed while nobody watched, but it had ended in time.
        (0, inspected(0, 4), {"deadline_passed": True}, RunStatus.SUCCEEDED, None),
        # It ran past its deadline while nobody watched, and ended by itself.
        (0, inspected(0, 30), {"deadline_passed": True}, RunStatus.TIMED_OUT, "timed out"),
        (137, inspected(137, 2, oom=True), {}, RunStatus.FAILED, "out of memory"),
        # A signal taskdash did not send: the engine stopping, `docker stop`, the script itself.
        (143, inspected(143, 2), {"ended_while_engine_away": True}, RunStatus.FAILED, "engine"),
        (137, inspected(137, 2), {"ended_while_engine_away": True}, RunStatus.FAILED, "SIGKILL"),
        (143, inspected(143, 2), {}, RunStatus.FAILED, "SIGTERM"),
        (3, inspected(3, 2), {"ended_while_engine_away": True}, RunStatus.FAILED, None),
        (
            143,
            inspected(143, 2),
            {"ended_while_engine_away": True, "stop_requested": True},
            RunStatus.STOPPED,
            None,
        ),
        (137, None, {"deadline_passed": True}, RunStatus.TIMED_OUT, "timed out"),
    ],
)
def test_run_outcome(
    exit_code: int,
    info: dict[str, Any] | None,
    flags: dict[str, bool],
    status: RunStatus,
    reason: str | None,
) -> None:
    options = {"stop_requested": False, "deadline_passed": False, "ended_while_engine_away": False}
    found, why = run_outcome(exit_code, info, timeout_seconds=10, memory_mb=64, **(options | flags))
    assert found is status
    assert (why is None) if reason is None else (why is not None and reason in why)


# the engine client's timeouts ---------------------------------------------------------------------


async def test_long_polls_have_no_time_limit_while_short_calls_do(docker_engine: None) -> None:
    """With a 1 s limit on every short call, waiting for and reading a container that is silent
    for 3 s still works: the long polls do not inherit the limit (aiodocker and aiohttp
    defaults are a known trap here). A session-long silence is tests/engine/test_zz_*.py."""
    engine = DockerEngine(call_timeout=aiohttp.ClientTimeout(total=1, sock_connect=1))
    await engine.open()
    spec = ContainerSpec(
        image=SHELL_IMAGE,
        command=["sh", "-c", "echo early; sleep 3; echo late"],
        labels={"taskdash.instance": f"test-silence-{uuid.uuid4().hex[:8]}"},
        job_volume=False,
    )
    container_id = await engine.create(spec)
    try:
        attachment = await engine.attach(container_id)
        await engine.start(container_id)
        started = time.monotonic()
        chunks = [chunk async for chunk in attachment.chunks()]
        assert await engine.wait(container_id) == 0
        await attachment.close()
        assert time.monotonic() - started > 2.5
        assert "".join(chunks).split() == ["early", "late"]
        # The logs API (re-attaching) too.
        assert "".join([c async for c in engine.follow_output(container_id)]).split() == [
            "early",
            "late",
        ]
    finally:
        await engine.remove(container_id)
        await engine.close()


async def test_a_hung_engine_reads_as_unavailable_then_answers_again(
    private_engines: Callable[..., PrivateEngine],
) -> None:
    private = private_engines(live_restore=False, image=None)
    engine = DockerEngine(private.url, call_timeout=aiohttp.ClientTimeout(total=1, sock_connect=1))
    await engine.open()
    try:
        assert await engine.ping()
        private.pause()  # SIGSTOP: connections are accepted, nothing answers
        started = time.monotonic()
        with pytest.raises(EngineUnavailable):
            await engine.inspect("no-such-container")
        assert time.monotonic() - started < 5
        with pytest.raises(EngineUnavailable):
            await engine.list_labelled({"taskdash.instance": "x"})
        private.resume()
        assert await engine.inspect("no-such-container") is None
        private.stop()  # gone: no socket to connect to
        with pytest.raises(EngineUnavailable) as gone:
            await engine.wait("no-such-container")
        assert gone.value.status == 503
    finally:
        private.resume()
        await engine.close()


# the engine goes away and comes back --------------------------------------------------------------


def test_engine_restart_with_live_restore_reattaches_and_loses_no_line(
    private_engines: Callable[..., PrivateEngine], make_server: Callable[..., LiveServer]
) -> None:
    engine = private_engines(live_restore=True)
    live = make_server(docker_url=engine.url, max_concurrent_runs="4")
    instance = instance_of(live)
    with live.client() as http:
        counter = create_task(http, counting(150), kind="sh")  # 15 s
        doomed = create_task(http, counting(600), kind="sh")
        wait_for(lambda: "line 10" in logs(http, counter["task_id"]), what="the counter")
        wait_for(lambda: "line 1" in logs(http, doomed["task_id"]), what="the doomed run")
        # Ends by itself while the engine is away.
        quitter = create_task(http, counting(5, 0.01, then="sleep 4\nexit 3\n"), kind="sh")
        wait_for(lambda: "line 5" in logs(http, quitter["task_id"]), what="the quitter")
        found = {
            name: engine.inspect(f"taskdash-{created['run_id']}")
            for name, created in (("counter", counter), ("quitter", quitter), ("doomed", doomed))
        }
        pids = {name: info["State"]["Pid"] for name, info in found.items()}

        engine.stop()
        assert pid_alive(pids["quitter"]), "the quitter should end after the engine stopped"
        # The engine comes back without this one's container (its process runs on, unknown).
        engine.forget_container(found["doomed"]["Id"])
        assert http.get("/healthz").status_code == 503
        assert http.get("/").status_code == 200  # the pages stay up
        waiting = create_task(http, "echo after the outage\n", kind="sh")
        assert get_run(http, waiting["task_id"], waiting["run_id"])["status"] == "queued"
        wait_for(lambda: not pid_alive(pids["quitter"]), what="the quitter to end meanwhile")
        assert pid_alive(pids["counter"]), "the counter should still run when the engine is back"
        assert get_run(http, waiting["task_id"], waiting["run_id"])["status"] == "queued"
        stored_before = len(logs(http, counter["task_id"]).splitlines())

        engine.start()
        back = time.monotonic()
        wait_for(
            lambda: len(logs(http, counter["task_id"]).splitlines()) > stored_before,
            what="the counter's log to grow again",
        )
        reattached = time.monotonic() - back
        waited = wait_run(http, waiting["task_id"], waiting["run_id"])
        recovered = time.monotonic() - back
        counted = wait_run(http, counter["task_id"], counter["run_id"], timeout=60)
        quit_run = wait_run(http, quitter["task_id"], quitter["run_id"])
        gone = wait_run(http, doomed["task_id"], doomed["run_id"])
        counter_log = logs(http, counter["task_id"])
        quitter_log = logs(http, quitter["task_id"]).splitlines()
        assert http.get("/healthz").status_code == 200
    print(
        f"\nengine back: counter re-attached in {reattached:.2f} s, "
        f"queued run done in {recovered:.2f} s"
    )

    assert (waited["status"], logs_of(live, waiting)) == ("succeeded", "after the outage\n")
    assert counted["status"] == "succeeded"
    assert counter_log.splitlines() == numbered(150)  # every number, once, in order
    # Ended while the engine was away: finished from what the engine recorded.
    assert (quit_run["status"], quit_run["exit_code"]) == ("failed", 3)
    assert quitter_log == [*numbered(5), ENDED_UNSEEN_NOTE]
    assert (gone["status"], gone["error"]) == ("error", CONTAINER_GONE)
    wait_for(lambda: engine.containers(f"taskdash.instance={instance}") == [], what="no container")


def logs_of(live: LiveServer, created: dict[str, Any]) -> str:
    with live.client() as http:
        return logs(http, created["task_id"], created["run_id"])


def test_engine_restart_without_live_restore_ends_the_run_with_the_reason(
    private_engines: Callable[..., PrivateEngine], make_server: Callable[..., LiveServer]
) -> None:
    engine = private_engines(live_restore=False)
    live = make_server(docker_url=engine.url)
    instance = instance_of(live)
    with live.client() as http:
        # The engine's shutdown stops its containers (SIGTERM: exit code 143), then it goes.
        stopped = create_task(http, counting(600), kind="sh")
        wait_for(lambda: "line 3" in logs(http, stopped["task_id"]), what="the run")
        engine.stop()
        assert http.get("/healthz").status_code == 503
        waiting = create_task(http, "echo after the outage\n", kind="sh")
        assert get_run(http, waiting["task_id"], waiting["run_id"])["status"] == "queued"
        engine.start()
        ended = wait_run(http, stopped["task_id"], stopped["run_id"])
        waited = wait_run(http, waiting["task_id"], waiting["run_id"])
        stopped_log = logs(http, stopped["task_id"])

    # Finished from what the engine recorded, with the reason; whether the run saw its
    # container end or the engine go first is timing, and both read the same.
    assert (ended["status"], ended["exit_code"]) == ("failed", 143)
    assert ended["error"] in {
        SIGNALLED.format(signal="SIGTERM", exit_code=143),
        STOPPED_WITH_ENGINE.format(signal="SIGTERM", exit_code=143),
    }
    lines = script_lines(stopped_log)
    assert len(lines) >= 3 and lines == numbered(len(lines))
    assert waited["status"] == "succeeded"
    wait_for(lambda: engine.containers(f"taskdash.instance={instance}") == [], what="no container")


# kill -9 at every step of a run's life ------------------------------------------------------------

FAULT_SCRIPT = "import tdfault, time\nprint(tdfault.VALUE, flush=True)\n" + (
    "for i in range(1, 31):\n    print(f'line {i}', flush=True)\n    time.sleep(0.05)\n"
)


@pytest.mark.parametrize("point", ["build.running", "run.created", "run.started", "run.exited"])
def test_kill_9_at_each_step_then_the_restart_finishes_the_run_whole(
    point: str, make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    requirement = fault_wheel(tmp_path / "wheels")
    env = {"pip_find_links": str(tmp_path / "wheels")}
    first = make_server(failpoint=point, **env)
    with first.client() as http:
        created = create_task(http, FAULT_SCRIPT, requirements=requirement + "\n")
    assert first.process is not None
    wait_for(lambda: first.process is not None and first.process.poll() is not None, what=point)
    assert first.process.returncode == -9

    second = restart(make_server, first, **env)
    with second.client() as http:
        run = wait_run(http, created["task_id"], created["run_id"], timeout=120)
        text = logs(http, created["task_id"])
        assert [r["status"] for r in runs_of(http, created["task_id"])] == ["succeeded"]
    assert run["status"] == "succeeded", text
    assert f"fault {requirement.partition('==')[2]}" in text.splitlines()
    assert script_lines(text) == numbered(30)
    assert run["build_started_at"] <= run["build_finished_at"] <= run["started_at"]
    assert 0 < run["duration_seconds"] < 30
    wait_for(lambda: shared_containers(f"taskdash.instance={instance_of(first)}") == [])


def fault_wheel(folder: Path) -> str:
    """A wheel of its own, so the build really runs (no cached requirements image): its
    requirement line."""
    version = f"1.0.{uuid.uuid4().int % 10**9}"
    make_wheel(folder, "tdfault", version, f"VALUE = 'fault {version}'\n")
    folder.chmod(0o755)
    return f"tdfault=={version}"


def paused(pid: int) -> bool:
    """The process is stopped (SIGSTOP)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("T", "t")


@pytest.mark.parametrize("point", ["build.running", "run.created"])
def test_engine_lost_before_the_script_started_queues_the_run_again_and_it_runs_once(
    point: str,
    private_engines: Callable[..., PrivateEngine],
    make_server: Callable[..., LiveServer],
    tmp_path: Path,
) -> None:
    """The server pauses at `point` and goes on with the engine stopped: its next call fails,
    the run waits for the engine, and once it is back the run's leftovers are removed and it
    starts again from the beginning. (Restarted while nothing was in flight, a live-restore
    engine goes unnoticed: the next call reconnects and finds the containers where they were.)"""
    engine = private_engines(live_restore=True, image="taskdash/python:bookworm")
    requirement = fault_wheel(tmp_path / "wheels")
    live = make_server(
        docker_url=engine.url, failpoint=f"{point}:pause", pip_find_links=str(tmp_path / "wheels")
    )
    assert live.process is not None
    with live.client() as http:
        created = create_task(http, FAULT_SCRIPT, requirements=requirement + "\n")
        wait_for(lambda: live.process is not None and paused(live.process.pid), what=point)
        engine.stop()
        os.kill(live.process.pid, signal.SIGCONT)
        wait_for(lambda: LOST in live.log_path.read_text(), what="the run to lose it")
        assert get_run(http, created["task_id"], created["run_id"])["status"] == "running"
        engine.start()
        run = wait_run(http, created["task_id"], created["run_id"], timeout=120)
        text = logs(http, created["task_id"])
    assert run["status"] == "succeeded", text
    assert REQUEUED_NOTE in text.splitlines()
    assert script_lines(text) == numbered(30)
    assert run["build_started_at"] <= run["build_finished_at"] <= run["started_at"]
    instance = f"taskdash.instance={instance_of(live)}"
    wait_for(lambda: engine.containers(instance) == [], what="no container left")


def test_the_build_has_its_own_phase_and_does_not_eat_the_runs_time(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """The run's clock starts with its container: a build longer than the run's timeout
    leaves the script all of its time."""
    wheels = tmp_path / "wheels"
    version = f"1.0.{uuid.uuid4().int % 10**9}"
    names = [f"tdslow{i}" for i in range(60)]  # sixty packages: a build of seconds
    for name in names:
        make_wheel(wheels, name, version, "VALUE = 1\n")
    wheels.chmod(0o755)
    live = make_server(pip_find_links=str(wheels))
    with live.client() as http:
        created = create_task(
            http,
            "import time\ntime.sleep(2)\nprint('done', flush=True)\n",
            requirements="".join(f"{name}=={version}\n" for name in names),
            timeout_seconds=3,
        )
        run = wait_run(http, created["task_id"], created["run_id"], timeout=180)
        text = logs(http, created["task_id"])
    # The premise: with the clock started before the build, this run would have timed out.
    assert run["build_seconds"] + run["duration_seconds"] > 3
    assert (run["status"], run["error"]) == ("succeeded", None), text
    assert text.splitlines()[-1] == "done"
    assert run["build_started_at"] < run["build_finished_at"] <= run["started_at"]
    # duration_seconds is the script's time, from its container's start to its end.
    assert 2 <= run["duration_seconds"] < 3
    assert run["build_seconds"] == pytest.approx(
        (
            datetime.fromisoformat(run["build_finished_at"])
            - datetime.fromisoformat(run["build_started_at"])
        ).total_seconds()
    )


def test_a_deadline_that_passed_while_the_server_was_down_is_timed_out_at_restart(
    make_server: Callable[..., LiveServer],
) -> None:
    first = make_server()
    with first.client() as http:
        created = create_task(http, "echo start\nsleep 120\n", kind="sh", timeout_seconds=3)
        task_id, run_id = created["task_id"], created["run_id"]
        wait_for(lambda: logs(http, task_id).strip() == "start", what="the script to start")
        started = datetime.fromisoformat(get_run(http, task_id, run_id)["started_at"])
    first.kill()
    (container_id,) = shared_containers(f"taskdash.run_id={run_id}")
    wait_for(
        lambda: datetime.now(UTC) > started + timedelta(seconds=3.5),
        timeout=10,
        what="the deadline to pass",
    )
    assert running_on_shared(container_id), "nobody should have ended it while the server was down"

    second = restart(make_server, first)
    with second.client() as http:
        run = wait_run(http, task_id, run_id, timeout=30)
        assert logs(http, task_id).strip() == "start"
    assert (run["status"], run["error"]) == ("timed_out", "timed out after 3 s")
    assert shared_containers(f"taskdash.run_id={run_id}") == []


def test_sigterm_with_runs_in_flight_exits_promptly_and_the_runs_carry_on(
    make_server: Callable[..., LiveServer],
) -> None:
    first = make_server(max_concurrent_runs="3")
    with first.client() as http:
        created = [create_task(http, counting(60), kind="sh") for _ in range(3)]
        waiting = create_task(http, "echo queued\n", kind="sh")  # no slot left
        wait_for(
            lambda: all("line 3" in logs(http, one["task_id"]) for one in created),
            what="every run to print",
        )
        assert get_run(http, waiting["task_id"], waiting["run_id"])["status"] == "queued"
    containers = [shared_containers(f"taskdash.run_id={one['run_id']}")[0] for one in created]
    stopping = time.monotonic()
    first.stop()
    exit_seconds = time.monotonic() - stopping
    print(
        f"\nSIGTERM with 3 runs in flight and 1 queued: the server exited in {exit_seconds:.2f} s"
    )
    assert first.process is not None and first.process.returncode == 0
    assert exit_seconds < 5
    assert all(running_on_shared(c) for c in containers), "containers outlive a stop"
    assert "Traceback" not in first.log_path.read_text()

    second = restart(make_server, first, max_concurrent_runs="3")
    with second.client() as http:
        finished = [wait_run(http, one["task_id"], one["run_id"], timeout=60) for one in created]
        texts = [logs(http, one["task_id"]) for one in created]
        queued = wait_run(http, waiting["task_id"], waiting["run_id"])
        assert logs(http, waiting["task_id"]) == "queued\n"
    assert [run["status"] for run in finished] == ["succeeded"] * 3
    assert all(text.splitlines() == numbered(60) for text in texts)
    assert queued["status"] == "succeeded"


# output faster than the server reads it -----------------------------------------------------------

# About 10.5 MB from the container's first millisecond: `seq` (C) needs no interpreter to start
# first. The engine's json-file log (max-size twice the cap, one file) is emptied several times
# before a follower that starts reading after the start could read its first lines: with the
# logs API followed after the start, the stored log began at line 756 to 11,996 here.
FAST_OUTPUT = "exec seq -f 'line %.0f " + "x" * 94 + "' 1 100000\n"


def test_fast_output_past_the_cap_is_stored_from_its_first_line(
    make_server: Callable[..., LiveServer],
) -> None:
    cap = 65536
    live = make_server(log_max_bytes=str(cap))
    with live.client() as http:
        created = create_task(http, FAST_OUTPUT, kind="sh")
        run = wait_run(http, created["task_id"], created["run_id"], timeout=120)
        text = logs(http, created["task_id"])
    lines = text.splitlines()
    assert run["status"] == "succeeded"
    assert lines[0] == "line 1 " + "x" * 94
    assert [line.split()[1] for line in lines[:-1]] == [str(i) for i in range(1, len(lines))]
    assert lines[-1].startswith("[taskdash] log truncated")
    assert run["log_truncated"] is True
    assert cap - 1024 < len(text.encode()) <= cap


def test_fast_output_under_the_cap_is_stored_whole(client: httpx.Client) -> None:
    created = create_task(client, "exec seq -f 'line %.0f' 1 50000\n", kind="sh")
    run = wait_run(client, created["task_id"], created["run_id"], timeout=120)
    assert run["status"] == "succeeded"
    assert (run["log_lines"], run["log_truncated"]) == (50_000, False)
    assert logs(client, created["task_id"]).splitlines() == numbered(50_000)
