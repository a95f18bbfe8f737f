"""Pure: the container spec of a run, down to the Engine API body."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from taskdash.core.config import Settings, load_settings
from taskdash.core.models import ScriptType
from taskdash.engine.spec import (
    Limits,
    clean_paths,
    container_config,
    declared_volumes,
    run_spec,
    script_archive,
    script_command,
)

MIB = 1024 * 1024
DEFAULT_LIMITS = Limits(timeout_seconds=5, memory_mb=128, cpus=0.5)


def run_config(
    settings: Settings | None = None,
    *,
    image: str = "img",
    env: Mapping[str, str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    image_volumes: Sequence[str] = (),
) -> dict[str, Any]:
    spec = run_spec(
        settings or load_settings(data_dir="/tmp/x"),
        image=image,
        script_type=ScriptType.PYTHON,
        script=b"print(1)",
        env=env or {},
        limits=limits,
        labels={"taskdash.run_id": "r"},
        image_volumes=image_volumes,
    )
    return container_config(spec)


def test_run_spec_is_hardened() -> None:
    config = run_config(env={"A": "1"})
    host = config["HostConfig"]
    assert config["User"] == "1000:1000"
    assert config["NetworkDisabled"] is True
    assert config["Entrypoint"] == [""]
    assert "Volumes" not in config
    assert "A=1" in config["Env"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == []
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == host["MemorySwap"] == 128 * MIB
    assert host["NanoCpus"] == 500_000_000
    assert host["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"}
    assert host["ShmSize"] == 64 * MIB
    assert host["Binds"] == []
    assert "Runtime" not in host


def test_job_is_a_fresh_volume_the_image_cannot_fill() -> None:
    mounts = run_config()["HostConfig"]["Mounts"]
    assert mounts == [{"Type": "volume", "Target": "/job", "VolumeOptions": {"NoCopy": True}}]


def test_the_script_is_roots_and_read_only() -> None:
    with tarfile.open(fileobj=io.BytesIO(script_archive(ScriptType.SHELL, b"echo"))) as archive:
        (member,) = archive.getmembers()
        extracted = archive.extractfile(member)
        assert extracted is not None and extracted.read() == b"echo"
    assert (member.name, member.uid, member.gid, member.mode) == ("script.sh", 0, 0, 0o555)


def test_image_volumes_become_sized_tmpfs() -> None:
    settings = load_settings(data_dir="/tmp/x", run_tmpfs_mb=32)
    host = run_config(settings, image_volumes=["/data", "/var/lib/x/"])["HostConfig"]
    assert host["Tmpfs"] == {
        "/tmp": "rw,nosuid,nodev,size=32m,mode=1777",
        "/data": "rw,nosuid,nodev,size=32m",
        "/var/lib/x": "rw,nosuid,nodev,size=32m",
    }
    assert host["ShmSize"] == 32 * MIB
    assert len(host["Mounts"]) == 1


def test_image_volumes_at_job_or_tmp_keep_those_mounts() -> None:
    host = run_config(image_volumes=["/job", "/tmp/", "/srv"])["HostConfig"]
    assert host["Tmpfs"] == {
        "/tmp": "rw,nosuid,nodev,size=64m,mode=1777",
        "/srv": "rw,nosuid,nodev,size=64m",
    }
    assert [mount["Target"] for mount in host["Mounts"]] == ["/job"]


@pytest.mark.parametrize(
    ("paths", "cleaned"),
    [
        ([], []),
        (["/data"], ["/data"]),
        (["/data/", "/data", "//data", "/x/../data"], ["/data"]),
        (["/b", "/a/./c"], ["/a/c", "/b"]),
        (["relative"], []),
    ],
)
def test_clean_paths(paths: list[str], cleaned: list[str]) -> None:
    assert clean_paths(paths) == cleaned


@pytest.mark.parametrize(
    ("info", "volumes"),
    [
        (None, []),
        ({}, []),
        ({"Config": None}, []),
        ({"Config": {"Volumes": None}}, []),
        ({"Config": {"Volumes": {"/b": {}, "/a": {}}}}, ["/a", "/b"]),
    ],
)
def test_declared_volumes(info: dict[str, Any] | None, volumes: list[str]) -> None:
    assert declared_volumes(info) == volumes


def test_runtime_is_the_settings() -> None:
    settings = load_settings(data_dir="/tmp/x", run_runtime="runsc")
    assert run_config(settings)["HostConfig"]["Runtime"] == "runsc"


HARDENING = (
    "NetworkMode",
    "ReadonlyRootfs",
    "CapDrop",
    "CapAdd",
    "SecurityOpt",
    "PidsLimit",
    "Tmpfs",
    "Mounts",
    "ShmSize",
    "Binds",
    "Init",
    "LogConfig",
)


@pytest.mark.parametrize(
    "task",
    [
        {"image": "evil/image:latest"},
        {"env": {"HOME": "/", "PATH": "/job", "DOCKER_HOST": "tcp://1.2.3.4", "LD_PRELOAD": "x"}},
        {"limits": Limits(timeout_seconds=1e9, memory_mb=1, cpus=0.001)},
        {"limits": Limits(timeout_seconds=1, memory_mb=10**6, cpus=512)},
    ],
)
def test_nothing_a_task_sets_turns_hardening_off(task: dict[str, Any]) -> None:
    default, chosen = run_config(), run_config(**task)
    assert {key: chosen["HostConfig"][key] for key in HARDENING} == {
        key: default["HostConfig"][key] for key in HARDENING
    }
    for key in ("User", "Entrypoint", "NetworkDisabled", "WorkingDir", "Cmd"):
        assert chosen[key] == default[key]


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
