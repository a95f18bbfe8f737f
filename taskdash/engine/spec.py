"""Pure: what a run's and a requirements build's containers are, down to the Engine API body.

Nothing here talks to Docker; engine/docker.py sends these specs.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskdash.core.config import MIB, Settings
from taskdash.core.models import ScriptType, Task

LABEL_PREFIX = "taskdash."
JOB_DIR = "/job"


@dataclass(frozen=True)
class BindMount:
    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one container; `container_config` turns it into API JSON."""

    image: str
    command: Sequence[str]
    labels: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = "1000:1000"
    network: str = "none"
    memory_bytes: int = 512 * 1024 * 1024
    nano_cpus: int = 1_000_000_000
    pids_limit: int = 256
    tmpfs_mb: int = 64
    read_only_root: bool = True
    job_volume: bool = True
    binds: Sequence[BindMount] = ()
    cap_add: Sequence[str] = ()
    log_max_bytes: int = 20 * 1024 * 1024
    working_dir: str = "/tmp"


def container_config(spec: ContainerSpec) -> dict[str, Any]:
    """Pure: the Engine API body for a hardened container built from `spec`."""
    host_config: dict[str, Any] = {
        "NetworkMode": spec.network,
        "ReadonlyRootfs": spec.read_only_root,
        "CapDrop": ["ALL"],
        "CapAdd": list(spec.cap_add),
        "SecurityOpt": ["no-new-privileges"],
        "Memory": spec.memory_bytes,
        "MemorySwap": spec.memory_bytes,
        "NanoCpus": spec.nano_cpus,
        "PidsLimit": spec.pids_limit,
        "Tmpfs": (
            {"/tmp": f"rw,nosuid,nodev,size={spec.tmpfs_mb}m,mode=1777"} if spec.tmpfs_mb else {}
        ),
        "LogConfig": {
            "Type": "json-file",
            "Config": {"max-size": str(spec.log_max_bytes), "max-file": "1"},
        },
        "Binds": [f"{b.source}:{b.target}:{'ro' if b.read_only else 'rw'}" for b in spec.binds],
        "Init": True,
    }
    config: dict[str, Any] = {
        "Image": spec.image,
        "Cmd": list(spec.command),
        "Labels": dict(spec.labels),
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "User": spec.user,
        "WorkingDir": spec.working_dir,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "NetworkDisabled": spec.network == "none",
        "HostConfig": host_config,
    }
    if spec.job_volume:
        config["Volumes"] = {JOB_DIR: {}}
    return config


def tar_single_file(name: str, content: bytes, *, uid: int, gid: int, mode: int) -> bytes:
    """An uncompressed tar holding one file, owned by the task's user."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.uid, info.gid, info.mode = uid, gid, mode
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


PYTHON_SCRIPT = "main.py"
SHELL_SCRIPT = "script.sh"


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float
    memory_mb: int
    cpus: float


def task_limits(task: Task, settings: Settings) -> Limits:
    """The task's own limits, else the installation's defaults."""
    return Limits(
        timeout_seconds=task.timeout_seconds or settings.run_timeout_seconds,
        memory_mb=task.memory_mb or settings.run_memory_mb,
        cpus=task.cpus or settings.run_cpus,
    )


def user_ids(user: str) -> tuple[int, int]:
    """uid and gid of a `uid:gid` setting (0 for a part that is a name, not a number)."""
    uid, _, gid = user.partition(":")
    return int(uid) if uid.isdigit() else 0, int(gid) if gid.isdigit() else 0


def script_filename(script_type: ScriptType) -> str:
    return PYTHON_SCRIPT if script_type is ScriptType.PYTHON else SHELL_SCRIPT


# Docker reads stdout and stderr from two pipes, so their relative order is lost; one pipe
# keeps the lines in the order the script printed them.
MERGE_STDERR = ["/bin/sh", "-c", 'exec "$@" 2>&1', "taskdash"]


def script_command(script_type: ScriptType, script: bytes) -> list[str]:
    path = f"{JOB_DIR}/{script_filename(script_type)}"
    if script_type is ScriptType.PYTHON:
        return [*MERGE_STDERR, "python3", "-u", path]
    if script.startswith(b"#!"):
        return [*MERGE_STDERR, path]
    return [*MERGE_STDERR, "/bin/sh", path]


def run_labels(instance: str, task_id: str, run_id: str, role: str) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}instance": instance,
        f"{LABEL_PREFIX}task_id": task_id,
        f"{LABEL_PREFIX}run_id": run_id,
        f"{LABEL_PREFIX}role": role,
    }


def run_spec(
    settings: Settings,
    *,
    image: str,
    script_type: ScriptType,
    script: bytes,
    env: Mapping[str, str],
    limits: Limits,
    labels: Mapping[str, str],
) -> ContainerSpec:
    return ContainerSpec(
        image=image,
        command=script_command(script_type, script),
        labels=labels,
        env={"HOME": "/tmp", **env},
        user=settings.run_user,
        network=settings.run_network,
        memory_bytes=limits.memory_mb * MIB,
        nano_cpus=int(limits.cpus * 1_000_000_000),
        pids_limit=settings.run_pids_limit,
        tmpfs_mb=settings.run_tmpfs_mb,
        log_max_bytes=2 * settings.log_max_bytes,
    )
