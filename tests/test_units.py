"""Pure logic: container specs, form parsing, the FIFO limiter, run outcomes, line splitting."""

from __future__ import annotations

import asyncio

import pytest

from taskdash.core.config import ConfigError, load_settings
from taskdash.core.errors import BadRequest, PayloadTooLarge
from taskdash.core.models import RunStatus, ScriptType
from taskdash.engine.docker import container_config
from taskdash.engine.runs import FifoLimiter, exit_reason, final_status
from taskdash.engine.spec import (
    Limits,
    build_spec,
    pip_command,
    requirements_key,
    run_spec,
    script_command,
)
from taskdash.logs.hub import MAX_LINE_CHARS, split_lines
from taskdash.web.forms import parse_bool, parse_env, parse_number, parse_page, read_script


def test_run_spec_is_hardened() -> None:
    settings = load_settings(data_dir="/tmp/x")
    spec = run_spec(
        settings,
        image="img",
        script_type=ScriptType.PYTHON,
        script=b"print(1)",
        env={"A": "1"},
        limits=Limits(timeout_seconds=5, memory_mb=128, cpus=0.5),
        labels={"taskdash.run_id": "r"},
    )
    config = container_config(spec)
    host = config["HostConfig"]
    assert config["User"] == "1000:1000"
    assert config["NetworkDisabled"] is True
    assert config["Volumes"] == {"/job": {}}
    assert "A=1" in config["Env"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == []
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == host["MemorySwap"] == 128 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["Tmpfs"]["/tmp"].startswith("rw,nosuid,nodev,size=64m")


def test_build_spec_may_use_the_network_but_not_more() -> None:
    settings = load_settings(data_dir="/tmp/x", build_network="bridge", pip_no_index=True)
    config = container_config(build_spec(settings, image="img", labels={}))
    assert config["HostConfig"]["NetworkMode"] == "bridge"
    assert config["HostConfig"]["CapAdd"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
    assert "--no-index" in config["Cmd"]


@pytest.mark.parametrize(
    ("script_type", "script", "tail"),
    [
        (ScriptType.PYTHON, b"print(1)", ["python3", "-u", "/job/main.py"]),
        (ScriptType.SHELL, b"echo", ["/bin/sh", "/job/script.sh"]),
        (ScriptType.SHELL, b"#!/bin/bash\necho", ["/job/script.sh"]),
    ],
)
def test_script_command(script_type: ScriptType, script: bytes, tail: list[str]) -> None:
    command = script_command(script_type, script)
    assert command[-len(tail) :] == tail
    assert command[:3] == ["/bin/sh", "-c", 'exec "$@" 2>&1']


def test_requirements_key_ignores_order_comments_and_blank_lines() -> None:
    assert requirements_key("img", "b\na\n") == requirements_key("img", "# x\na\n\nb")
    assert requirements_key("img", "a") != requirements_key("other", "a")
    assert requirements_key("img", "a==1") != requirements_key("img", "a==2")


def test_pip_command_uses_the_configured_sources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(
        data_dir="/tmp/x",
        pip_index_url="https://mirror/simple",
        pip_extra_index_url="https://extra/simple",
        pip_find_links=str(tmp_path),
    )
    command = " ".join(pip_command(settings))
    assert "--index-url https://mirror/simple" in command
    assert "--extra-index-url https://extra/simple" in command
    assert "--find-links /wheels" in command


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"run_memory_mb": "lots"}, "TASKDASH_RUN_MEMORY_MB"),
        ({"max_concurrent_runs": "0"}, "TASKDASH_MAX_CONCURRENT_RUNS"),
        ({"pip_ca_bundle": "/nonexistent/ca.pem"}, "TASKDASH_PIP_CA_BUNDLE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**env)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("", True), ("true", True), ("1", True), ("off", False), ("False", False)],
)
def test_parse_bool(value: str | None, expected: bool) -> None:
    assert parse_bool(value, "upload", default=True) is expected


@pytest.mark.parametrize("value", ["maybe", "2", "yes please"])
def test_parse_bool_rejects(value: str) -> None:
    with pytest.raises(BadRequest, match="'upload' must be true or false"):
        parse_bool(value, "upload", default=True)


def test_parse_number_and_page() -> None:
    assert parse_number("2.5", "cpus", float, 0.1, 4.0) == 2.5
    assert parse_number(" ", "cpus", float, 0.1, 4.0) is None
    with pytest.raises(BadRequest, match="between"):
        parse_number("9", "cpus", float, 0.1, 4.0)
    assert parse_page({}, 50) == (50, 0)
    assert parse_page({"limit": "5", "offset": "10"}, 50) == (5, 10)


def test_parse_env() -> None:
    assert parse_env('{"A": "x", "B": 2}') == {"A": "x", "B": "2"}
    assert parse_env(None) == {}
    with pytest.raises(BadRequest, match="must be a string"):
        parse_env('{"A": {"nested": 1}}')


class FakeUpload:
    def __init__(self, filename: str, content: bytes) -> None:
        self.filename = filename
        self._content = content

    def read(self) -> bytes:
        return self._content


def test_read_script_prefers_the_file_then_the_text_field() -> None:
    assert read_script({}, {"file": FakeUpload("a.py", b"x")}, 10) == (b"x", "a.py")
    assert read_script({"script": "y\r\n"}, {}, 10) == (b"y\n", "")
    with pytest.raises(PayloadTooLarge, match="limit is 3 bytes"):
        read_script({}, {"file": FakeUpload("a.py", b"four")}, 3)


@pytest.mark.parametrize(
    ("code", "stop", "timeout", "status"),
    [
        (0, False, False, RunStatus.SUCCEEDED),
        (1, False, False, RunStatus.FAILED),
        (137, True, False, RunStatus.STOPPED),
        (0, True, False, RunStatus.STOPPED),
        (137, False, True, RunStatus.TIMED_OUT),
        (137, True, True, RunStatus.TIMED_OUT),
    ],
)
def test_final_status(code: int, stop: bool, timeout: bool, status: RunStatus) -> None:
    assert final_status(code, stop_requested=stop, timed_out=timeout) is status


def test_exit_reason_names_the_oom_kill() -> None:
    assert exit_reason({"State": {"OOMKilled": True}}, 64) == "killed: out of memory (limit 64 MiB)"
    assert exit_reason({"State": {"OOMKilled": False}}, 64) is None
    assert exit_reason(None, 64) is None


def test_terminal_statuses() -> None:
    assert not RunStatus.QUEUED.is_terminal and not RunStatus.RUNNING.is_terminal
    assert all(s.is_terminal for s in RunStatus if s not in (RunStatus.QUEUED, RunStatus.RUNNING))


async def test_fifo_limiter_serves_waiters_in_order() -> None:
    limiter = FifoLimiter(1)
    order: list[int] = []
    await limiter.acquire()

    async def waiter(number: int) -> None:
        async with limiter.slot():
            order.append(number)

    waiters = [asyncio.create_task(waiter(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert limiter.active == 1 and order == []
    limiter.release()
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2, 3, 4]
    assert limiter.active == 0


async def test_fifo_limiter_cancelled_waiter_gives_its_place_up() -> None:
    limiter = FifoLimiter(1)
    await limiter.acquire()
    cancelled = asyncio.create_task(limiter.acquire())
    kept = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    limiter.release()
    await asyncio.wait_for(kept, 1)
    assert limiter.active == 1


async def test_fifo_limiter_survives_the_holder_and_its_waiters_cancelled_together() -> None:
    # As at shutdown, when every execution is cancelled at once: the holder's release meets
    # waiters already cancelled, which must not then fail on their way out.
    limiter = FifoLimiter(1)

    async def hold() -> None:
        async with limiter.slot():
            await asyncio.sleep(60)

    tasks = [asyncio.create_task(hold()) for _ in range(3)]
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(result) for result in results] == [asyncio.CancelledError] * 3
    assert limiter.active == 0
    await asyncio.wait_for(limiter.acquire(), 1)


@pytest.mark.parametrize(
    ("pending", "chunk", "lines", "rest"),
    [
        ("", "a\nb\n", ["a", "b"], ""),
        ("", "a\nb", ["a"], "b"),
        ("par", "tial\n", ["partial"], ""),
        ("", "crlf\r\n", ["crlf"], ""),
        ("", "\n\n", ["", ""], ""),
    ],
)
def test_split_lines(pending: str, chunk: str, lines: list[str], rest: str) -> None:
    assert split_lines(pending, chunk) == (lines, rest)


def test_split_lines_bounds_an_endless_line() -> None:
    lines, rest = split_lines("", "x" * (MAX_LINE_CHARS * 2 + 5))
    assert lines == ["x" * MAX_LINE_CHARS] * 2
    assert rest == "x" * 5
