"""Pure: a run as Swarm objects, down to the Engine API 1.41 bodies.

The run's container (engine/spec.py's ContainerSpec, the same one the docker executor creates)
becomes a `replicated-job` service that runs once and is never restarted, its script a swarm
config mounted read-only in /job, and its network one of its own: an internal overlay that
reaches nothing (a service cannot join the `none` network). Nothing here talks to Docker;
engine/swarm.py sends these bodies.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskdash.core.config import MIB
from taskdash.engine.spec import (
    JOB_DIR,
    SCRIPT_GID,
    SCRIPT_MODE,
    SCRIPT_UID,
    TMP_DIR,
    ContainerSpec,
    clean_paths,
)

NANO = 1_000_000_000
SHM_DIR = "/dev/shm"
# Task states after which nothing more happens to the task (docker/api/types/swarm/task.go).
ENDED_STATES = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
# The task ran its container: its exit code is known.
EXITED_STATES = frozenset({"complete", "failed"})


@dataclass(frozen=True)
class ScriptConfig:
    """The swarm config holding a run's script, and the file it becomes in the container."""

    config_id: str
    config_name: str
    target: str


def object_name(run_id: str) -> str:
    """The name of a run's service, config and network (each kind has its own namespace)."""
    return f"taskdash-{run_id}"


def network_spec(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """A run's own network: internal (no gateway, so no route out, not even to the node), and
    nobody else's, so one run cannot reach another."""
    return {
        "Name": name,
        "Driver": "overlay",
        "Internal": True,
        "Attachable": False,
        "CheckDuplicate": True,
        "Labels": dict(labels),
    }


def tmpfs_mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    """/tmp, /dev/shm and each VOLUME the image declares, each a tmpfs of `tmpfs_mb` (a
    service cannot size /dev/shm otherwise; a declared VOLUME left alone would be an anonymous
    volume on the node's disk)."""
    size = {"SizeBytes": spec.tmpfs_mb * MIB} if spec.tmpfs_mb else {}
    paths = [path for path in clean_paths(spec.image_volumes) if path not in (TMP_DIR, SHM_DIR)]
    mounts = [
        {"Type": "tmpfs", "Target": path, "TmpfsOptions": dict(size)} for path in [*paths, SHM_DIR]
    ]
    if spec.tmpfs_mb:
        mounts.append(
            {"Type": "tmpfs", "Target": TMP_DIR, "TmpfsOptions": {**size, "Mode": 0o1777}}
        )
    return mounts


def script_mount(script: ScriptConfig) -> dict[str, Any]:
    """The script as /job/<file>: root's, mode 0555, like the docker executor's copy."""
    return {
        "File": {
            "Name": script.target,
            "UID": str(SCRIPT_UID),
            "GID": str(SCRIPT_GID),
            "Mode": SCRIPT_MODE,
        },
        "ConfigID": script.config_id,
        "ConfigName": script.config_name,
    }


def service_spec(
    spec: ContainerSpec,
    *,
    name: str,
    script: ScriptConfig,
    network: str,
    constraints: Sequence[str] = (),
    stop_grace_seconds: int = 5,
) -> dict[str, Any]:
    """Pure: the ServiceSpec of a run whose container is `spec` (its image already the
    reference the nodes use)."""
    container: dict[str, Any] = {
        "Image": spec.image,
        # Command replaces the image's ENTRYPOINT, as the docker executor's [""] does.
        "Command": list(spec.command),
        "Labels": dict(spec.labels),
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "Dir": spec.working_dir,
        "User": spec.user,
        "ReadOnly": spec.read_only_root,
        "Init": True,
        "CapabilityDrop": ["ALL"],
        "HealthCheck": {"Test": ["NONE"]},
        "StopGracePeriod": stop_grace_seconds * NANO,
        "Mounts": tmpfs_mounts(spec),
        "Configs": [script_mount(script)],
    }
    if spec.cap_add:
        container["CapabilityAdd"] = list(spec.cap_add)
    limits = {"NanoCPUs": spec.nano_cpus, "MemoryBytes": spec.memory_bytes, "Pids": spec.pids_limit}
    return {
        "Name": name,
        "Labels": dict(spec.labels),
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": {
                # No reservations: Engine 20.10 counts every finished job task's reservation
                # against its node for good (moby/moby#52652), and after a few dozen runs it
                # would reject every new one ("assigned node no longer meets constraints").
                "Limits": limits,
            },
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Placement": {"Constraints": list(constraints)},
            "Networks": [{"Target": network}],
            "LogDriver": {
                "Name": "json-file",
                "Options": {"max-size": str(spec.log_max_bytes), "max-file": "1"},
            },
        },
        # No virtual IP: nothing is to reach the run.
        "EndpointSpec": {"Mode": "dnsrr"},
    }


def script_target(filename: str) -> str:
    return f"{JOB_DIR}/{filename}"


def image_reference(name: str, info: Mapping[str, Any], node_id: str) -> tuple[str, list[str]]:
    """The image a run's service names, and the constraint that comes with it. An image from a
    registry is named by its digest, so every node runs exactly it (pulling it when missing);
    one that exists only on this engine (the default images, requirements images) is named by
    its id, which no node tries to pull, and the run is held to this node, the only one that
    has it."""
    repo = name.rpartition("@")[0] or name.rpartition(":")[0] or name
    for digest in info.get("RepoDigests") or []:
        if digest.partition("@")[0] == repo or name.startswith(digest.partition("@")[0]):
            return str(digest), []
    return str(info["Id"]), [f"node.id=={node_id}"]


def task_exit_code(task: Mapping[str, Any]) -> int | None:
    """The exit code of a task whose container ran and ended; None otherwise."""
    status = task.get("Status") or {}
    if status.get("State") not in EXITED_STATES:
        return None
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return int(code) if code is not None else None


def latest_task(tasks: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """A job service of one completion has one task; the newest, should there be more."""
    if not tasks:
        return None
    return max(tasks, key=lambda task: str(task.get("CreatedAt") or ""))


def task_state(task: Mapping[str, Any] | None) -> str:
    return str(((task or {}).get("Status") or {}).get("State") or "pending")


def inspect_view(
    service: Mapping[str, Any], task: Mapping[str, Any] | None, container: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What `GET /<task_id>` and the run's page show for a swarm run: the shape of
    `docker inspect` (Id, Name, Config, HostConfig, State), with the service and its task
    beside it. The container's own data where this engine has it (its node is this one), else
    what the service and the task say. `Id` is the service's: it is the run's handle."""
    spec = service.get("Spec") or {}
    template = spec.get("TaskTemplate") or {}
    container_spec = template.get("ContainerSpec") or {}
    limits = (template.get("Resources") or {}).get("Limits") or {}
    status = (task or {}).get("Status") or {}
    state = task_state(task)
    code = task_exit_code(task or {})
    view: dict[str, Any] = {
        "Config": {
            "Image": container_spec.get("Image"),
            "Env": list(container_spec.get("Env") or []),
            "User": container_spec.get("User"),
            "Labels": dict(container_spec.get("Labels") or {}),
        },
        "HostConfig": {
            "NetworkMode": ",".join(str(n.get("Target")) for n in template.get("Networks") or []),
            "Memory": limits.get("MemoryBytes"),
            "NanoCpus": limits.get("NanoCPUs"),
            "PidsLimit": limits.get("Pids"),
            "ReadonlyRootfs": bool(container_spec.get("ReadOnly")),
        },
        "State": {
            "Status": state,
            "Running": state not in ENDED_STATES,
            "ExitCode": code,
            "OOMKilled": False,
            "StartedAt": service.get("CreatedAt"),
            "FinishedAt": status.get("Timestamp") if state in ENDED_STATES else None,
            "Error": status.get("Err"),
        },
    }
    if container is not None:
        view |= {
            key: container[key] for key in ("Config", "HostConfig", "State") if key in container
        }
        view["ContainerId"] = container.get("Id")
    # The run's clock starts with its service (its timeout counts from there, and so does the
    # check that it really ran that long): the container starts once the swarm placed it.
    view["State"] = {
        **view["State"],
        "StartedAt": service.get("CreatedAt"),
        "ContainerStartedAt": view["State"].get("StartedAt"),
    }
    return view | {
        "Id": service.get("ID"),
        "Name": spec.get("Name"),
        "Executor": "swarm",
        "Service": without_env(service),
        "Task": without_env(task) if task is not None else None,
    }


def without_env(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a service or a task with no env in its specs: Config.Env holds it, where
    secret values are masked (engine/redact.py)."""
    copied = copy.deepcopy(dict(item))
    for key in ("Spec", "PreviousSpec"):
        spec = copied.get(key) or {}
        container = (spec.get("TaskTemplate") or spec).get("ContainerSpec") or {}
        container.pop("Env", None)
    return copied
