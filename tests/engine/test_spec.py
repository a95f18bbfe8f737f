"""Pure: the container specs of a run and of a requirements build."""

from __future__ import annotations

import pytest

from taskdash.core.config import load_settings
from taskdash.core.models import ScriptType
from taskdash.engine.spec import (
    Limits,
    build_spec,
    container_config,
    pip_command,
    requirements_key,
    run_spec,
    script_command,
)


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
