"""Pure: the container specs of a run and of a requirements build."""

from __future__ import annotations

import pytest

from taskdash.core.config import load_settings
from taskdash.core.models import ScriptType
from taskdash.engine.spec import (
    Limits,
    container_config,
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
