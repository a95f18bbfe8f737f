"""Pure: the container of a requirements build, what goes into it, the image it leaves, its
cache key, and the build network's firewall rules."""

from __future__ import annotations

import io
import json
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from taskdash.core.config import MIB, load_settings
from taskdash.engine.build_spec import (
    BUILD_CA_PATH,
    SOURCES_PATH,
    bridge_interface,
    build_archive,
    build_spec,
    deps_image_config,
    dns_servers,
    firewall_jumps,
    firewall_restore,
    network_config,
    pip_command,
    pip_sources,
    readable_by,
    requirements_key,
)
from taskdash.engine.spec import container_config

SECRET_INDEX = "https://user:s3cret@mirror.example/simple"


def test_the_build_runs_as_the_run_user_with_nothing_extra() -> None:
    settings = load_settings(
        data_dir="/tmp/x",
        run_user="1234:5678",
        build_network="taskdash-build",
        build_memory_mb=700,
        build_pids_limit=99,
        build_tmpfs_mb=300,
    )
    config = container_config(build_spec(settings, image="img", labels={}))
    host = config["HostConfig"]
    assert config["User"] == "1234:5678"
    assert (host["CapDrop"], host["CapAdd"]) == (["ALL"], [])
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == host["MemorySwap"] == 700 * MIB
    assert host["PidsLimit"] == 99
    assert "size=300m" in host["Tmpfs"]["/tmp"]
    assert host["NetworkMode"] == "taskdash-build"
    # The commit keeps whatever environment the container has beyond the image's.
    assert config["Env"] == []


def test_image_volumes_of_the_build_get_a_tmpfs() -> None:
    settings = load_settings(data_dir="/tmp/x")
    spec = build_spec(settings, image="img", labels={}, image_volumes=["/data"])
    assert "/data" in container_config(spec)["HostConfig"]["Tmpfs"]


def test_credentials_and_paths_stay_out_of_the_command(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    settings = load_settings(
        data_dir="/tmp/x",
        pip_index_url=SECRET_INDEX,
        pip_extra_index_url="https://extra/simple",
        pip_find_links=str(tmp_path),
        pip_ca_bundle=str(bundle),
    )
    command = " ".join(pip_command(settings))
    assert "s3cret" not in command and "extra/simple" not in command
    assert "--cert" not in command
    assert "--find-links /job/wheels" in command
    assert pip_sources(settings) == [
        "--index-url", SECRET_INDEX, "--extra-index-url", "https://extra/simple",
        "--cert", BUILD_CA_PATH,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "present", "absent"),
    [
        ({"pip_no_index": True}, ["--no-index"], ["--only-binary"]),
        ({"pip_only_binary": True}, ["--only-binary :all:"], ["--no-index"]),
        ({}, ["--target /deps", "-r /job/requirements.txt"], ["--find-links"]),
    ],
)
def test_pip_command_flags(settings: dict[str, Any], present: list[str], absent: list[str]) -> None:
    command = " ".join(pip_command(load_settings(data_dir="/tmp/x", **settings)))
    assert all(flag in command for flag in present)
    assert not any(flag in command for flag in absent)


def test_no_index_leaves_the_index_urls_out_of_the_build() -> None:
    settings = load_settings(data_dir="/tmp/x", pip_no_index=True, pip_index_url=SECRET_INDEX)
    assert pip_sources(settings) == []


def test_the_archive_makes_deps_and_job_the_run_users() -> None:
    settings = load_settings(data_dir="/tmp/x", run_user="1234:5678", pip_index_url=SECRET_INDEX)
    with tarfile.open(fileobj=io.BytesIO(build_archive(settings, "six\n"))) as archive:
        members = {m.name: m for m in archive.getmembers()}
        sources = archive.extractfile(SOURCES_PATH.lstrip("/"))
        assert sources is not None
        assert json.loads(sources.read()) == ["--index-url", SECRET_INDEX]
    assert sorted(members) == ["deps", "job", "job/pip-sources.json", "job/requirements.txt"]
    assert all((m.uid, m.gid) == (1234, 5678) for m in members.values())
    assert members["deps"].isdir() and members["job"].isdir()
    assert (members["job"].mode, members["job/pip-sources.json"].mode) == (0o700, 0o400)


@pytest.mark.parametrize(
    ("base", "env", "entrypoint"),
    [
        ({"Env": ["PATH=/bin"], "Cmd": ["python3"]}, ["PATH=/bin", "PYTHONPATH=/deps"], []),
        (
            {"Env": ["PYTHONPATH=/app"], "Cmd": None, "Entrypoint": ["/entry"]},
            ["PYTHONPATH=/deps:/app"],
            ["/entry"],
        ),
    ],
)
def test_the_image_config_is_the_base_images(
    base: dict[str, Any], env: list[str], entrypoint: list[str]
) -> None:
    settings = load_settings(data_dir="/tmp/x", run_user="1000:1000")
    config = deps_image_config({**base, "Labels": {"a": "b"}, "WorkingDir": "/w"}, settings)
    assert config == {
        "Env": env,
        "Cmd": base["Cmd"],
        "Entrypoint": entrypoint,
        "User": "1000:1000",
        "WorkingDir": "/w",
        "Labels": {"a": "b"},
    }


def test_requirements_key_ignores_order_comments_and_blank_lines() -> None:
    assert requirements_key("img", "b\na\n") == requirements_key("img", "# x\na\n\nb")
    assert requirements_key("img", "a") != requirements_key("img", "other")
    assert requirements_key("img", "a") != requirements_key("other", "a")
    assert requirements_key("img", "a==1") != requirements_key("img", "a==2")


@pytest.mark.parametrize(
    ("mode", "owner", "group", "readable"),
    [
        (stat.S_IFDIR | 0o700, 0, 0, False),
        (stat.S_IFDIR | 0o755, 0, 0, True),
        (stat.S_IFDIR | 0o700, 1000, 0, True),
        (stat.S_IFDIR | 0o750, 0, 1000, True),
        (stat.S_IFDIR | 0o744, 0, 0, False),
        (stat.S_IFREG | 0o644, 0, 0, True),
        (stat.S_IFREG | 0o600, 0, 0, False),
    ],
)
def test_readable_by_the_build_user(mode: int, owner: int, group: int, readable: bool) -> None:
    assert readable_by("1000:1000", mode, owner, group) is readable


def test_the_build_network_keeps_its_containers_apart() -> None:
    config = network_config()
    assert config["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert config["Labels"] == {"taskdash.role": "build-network"}
    assert bridge_interface({"Driver": "bridge", "Id": "abc", "Options": config["Options"]}) == (
        "taskdash-build"
    )
    assert bridge_interface({"Driver": "bridge", "Id": "0123456789abcdef", "Options": {}}) == (
        "br-0123456789ab"
    )
    assert bridge_interface({"Driver": "overlay", "Id": "x"}) is None


@pytest.mark.parametrize(
    ("text", "servers"),
    [
        ("nameserver 10.255.255.53\n", ["10.255.255.53"]),
        ("# x\nnameserver 127.0.0.53\noptions edns0\n", []),
        ("nameserver 192.168.1.1\nnameserver ::1\nnameserver 1.1.1.1", ["192.168.1.1", "1.1.1.1"]),
        ("search lan\n", []),
    ],
)
def test_dns_servers_of_a_resolv_conf(text: str, servers: list[str]) -> None:
    assert dns_servers(text) == servers


def test_firewall_rules() -> None:
    assert firewall_restore(["10.0.0.2"]).splitlines() == [
        "*filter",
        ":TASKDASH-BUILD-INPUT - [0:0]",
        ":TASKDASH-BUILD-FORWARD - [0:0]",
        "-A TASKDASH-BUILD-INPUT -p udp --dport 53 -j RETURN",
        "-A TASKDASH-BUILD-INPUT -p tcp --dport 53 -j RETURN",
        "-A TASKDASH-BUILD-INPUT -j DROP",
        "-A TASKDASH-BUILD-FORWARD -d 10.0.0.2/32 -p udp --dport 53 -j RETURN",
        "-A TASKDASH-BUILD-FORWARD -d 10.0.0.2/32 -p tcp --dport 53 -j RETURN",
        "-A TASKDASH-BUILD-FORWARD -d 169.254.0.0/16 -j DROP",
        "-A TASKDASH-BUILD-FORWARD -d 10.0.0.0/8 -j DROP",
        "-A TASKDASH-BUILD-FORWARD -d 172.16.0.0/12 -j DROP",
        "-A TASKDASH-BUILD-FORWARD -d 192.168.0.0/16 -j DROP",
        "-A TASKDASH-BUILD-FORWARD -d 100.64.0.0/10 -j DROP",
        "COMMIT",
    ]
    assert firewall_jumps("br0") == [
        ("INPUT", ["-i", "br0", "-j", "TASKDASH-BUILD-INPUT"]),
        ("DOCKER-USER", ["-i", "br0", "-j", "TASKDASH-BUILD-FORWARD"]),
    ]
