"""Pure: what a run's and a requirements build's containers are, down to the Engine API body.

Nothing here talks to Docker; engine/docker.py sends these specs.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskdash.core.config import MIB, Settings
from taskdash.core.models import ScriptType, Task

LABEL_PREFIX = "taskdash."
JOB_DIR = "/job"
TMP_DIR = "/tmp"
# The script belongs to root and nobody may write it: the run (uid 1000) can read and execute
# it but neither change it nor add files beside it.
SCRIPT_UID = SCRIPT_GID = 0
SCRIPT_MODE = 0o555


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
    working_dir: str = TMP_DIR
    image_volumes: Sequence[str] = ()
    runtime: str | None = None


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
        "Tmpfs": tmpfs_mounts(spec),
        "Mounts": [job_mount()] if spec.job_volume else [],
        "LogConfig": {
            "Type": "json-file",
            "Config": {"max-size": str(spec.log_max_bytes), "max-file": "1"},
        },
        "Binds": [f"{b.source}:{b.target}:{'ro' if b.read_only else 'rw'}" for b in spec.binds],
        "Init": True,
    }
    if spec.tmpfs_mb:
        # /dev/shm is a tmpfs too; Docker's default size would not follow the setting.
        host_config["ShmSize"] = spec.tmpfs_mb * MIB
    if spec.runtime:
        host_config["Runtime"] = spec.runtime
    return {
        "Image": spec.image,
        # [""] resets the image's ENTRYPOINT, so a custom image cannot wrap or replace the command.
        "Entrypoint": [""],
        # Nor run a HEALTHCHECK of its own inside the run.
        "Healthcheck": {"Test": ["NONE"]},
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


def job_mount() -> dict[str, Any]:
    """A fresh anonymous volume at /job, removed with the container. NoCopy keeps its root
    root's 0755: the image's /job, owned by the run's user, is not copied in."""
    return {"Type": "volume", "Target": JOB_DIR, "VolumeOptions": {"NoCopy": True}}


def tmpfs_mounts(spec: ContainerSpec) -> dict[str, str]:
    """/tmp, and a tmpfs over each VOLUME the image declares: the engine would otherwise give
    each one an anonymous volume on the host's disk, unsized. Every tmpfs counts against the
    container's memory limit."""
    options = f"rw,nosuid,nodev,size={spec.tmpfs_mb}m" if spec.tmpfs_mb else "rw,nosuid,nodev"
    mounts = {path: options for path in clean_paths(spec.image_volumes)}
    if spec.job_volume:
        mounts.pop(JOB_DIR, None)
    if spec.tmpfs_mb:
        mounts[TMP_DIR] = f"{options},mode=1777"
    return mounts


def clean_paths(paths: Sequence[str]) -> list[str]:
    """Absolute paths cleaned as the engine's filepath.Clean does (normpath alone keeps a
    leading "//"), so one destination is not mounted twice."""
    return sorted({posixpath.normpath("/" + path.lstrip("/")) for path in paths if path[:1] == "/"})


def declared_volumes(image_info: Mapping[str, Any] | None) -> list[str]:
    """The VOLUME paths in an image's inspect data (`Config.Volumes`)."""
    config = (image_info or {}).get("Config") or {}
    return sorted(config.get("Volumes") or {})


def tar_single_file(name: str, content: bytes, *, uid: int, gid: int, mode: int) -> bytes:
    """An uncompressed tar holding one file with the given owner and mode."""
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
    """The task's own limits, else the installation's defaults; never above the maxima (a task
    stored before they were lowered gets the maximum)."""
    return Limits(
        timeout_seconds=min(
            task.timeout_seconds or settings.run_timeout_seconds, settings.max_run_timeout_seconds
        ),
        memory_mb=min(task.memory_mb or settings.run_memory_mb, settings.max_run_memory_mb),
        cpus=min(task.cpus or settings.run_cpus, settings.max_run_cpus),
    )


def user_ids(user: str) -> tuple[int, int]:
    """uid and gid of a `uid:gid` setting (0 for a part that is a name, not a number)."""
    uid, _, gid = user.partition(":")
    return int(uid) if uid.isdigit() else 0, int(gid) if gid.isdigit() else 0


def script_filename(script_type: ScriptType) -> str:
    return PYTHON_SCRIPT if script_type is ScriptType.PYTHON else SHELL_SCRIPT


def script_archive(script_type: ScriptType, script: bytes) -> bytes:
    """The tar copied into /job: the script, read-only and root's."""
    return tar_single_file(
        script_filename(script_type), script, uid=SCRIPT_UID, gid=SCRIPT_GID, mode=SCRIPT_MODE
    )


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
    image_volumes: Sequence[str] = (),
) -> ContainerSpec:
    """A run's container; `image_volumes` are the VOLUME paths its image declares."""
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
        image_volumes=tuple(image_volumes),
        runtime=settings.run_runtime,
    )
