"""Pure: a run's ServiceSpec, its image reference, and how its task's state reads."""

from __future__ import annotations

from typing import Any

import pytest

from taskdash.core.config import MIB, Settings
from taskdash.core.models import ScriptType
from taskdash.engine.redact import redact_env
from taskdash.engine.spec import Limits, run_labels, run_spec
from taskdash.engine.swarm import RETIRED, is_container_id, refused, retired, run_task, side_labels
from taskdash.engine.swarm_spec import (
    ScriptConfig,
    image_reference,
    inspect_view,
    network_spec,
    service_spec,
    task_exit_code,
)

LABELS = run_labels("inst", "task-1", "run-1", "run")


def a_spec(**changes: Any) -> dict[str, Any]:
    spec = run_spec(
        Settings(_env_file=None),  # type: ignore[call-arg]
        image="sha256:abc",
        script_type=ScriptType.PYTHON,
        script=b"print(1)\n",
        env={"API_KEY": "s3cret"},
        limits=Limits(timeout_seconds=60, memory_mb=256, cpus=0.5),
        labels=LABELS,
        image_volumes=changes.pop("image_volumes", ()),
    )
    return service_spec(
        spec,
        name="taskdash-run-1",
        script=ScriptConfig("cfg1", "taskdash-run-1", "/job/main.py"),
        network="taskdash-run-1",
        constraints=["node.id==n1", "node.labels.pool==runs"],
        stop_grace_seconds=5,
    )


def test_a_run_is_a_replicated_job_that_runs_once_and_never_restarts() -> None:
    body = a_spec()
    assert body["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    template = body["TaskTemplate"]
    assert template["RestartPolicy"] == {"Condition": "none", "MaxAttempts": 0}
    assert template["Placement"] == {"Constraints": ["node.id==n1", "node.labels.pool==runs"]}
    assert template["Networks"] == [{"Target": "taskdash-run-1"}]
    assert body["EndpointSpec"] == {"Mode": "dnsrr"}
    assert body["Labels"] == LABELS and template["ContainerSpec"]["Labels"] == LABELS


def test_the_service_carries_the_containers_limits_and_hardening() -> None:
    template = a_spec()["TaskTemplate"]
    container = template["ContainerSpec"]
    # No reservations (moby/moby#52652: Engine 20.10 never frees a finished job's).
    assert template["Resources"] == {
        "Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 256 * MIB, "Pids": 256},
    }
    assert container["User"] == "1000:1000"
    assert container["ReadOnly"] is True and container["Init"] is True
    assert container["CapabilityDrop"] == ["ALL"] and "CapabilityAdd" not in container
    assert container["HealthCheck"] == {"Test": ["NONE"]}
    assert container["StopGracePeriod"] == 5_000_000_000
    assert container["Command"][-2:] == ["-u", "/job/main.py"]
    assert container["Dir"] == "/tmp"
    assert "API_KEY=s3cret" in container["Env"]
    assert container["Configs"] == [
        {
            "File": {"Name": "/job/main.py", "UID": "0", "GID": "0", "Mode": 0o555},
            "ConfigID": "cfg1",
            "ConfigName": "taskdash-run-1",
        }
    ]
    assert template["LogDriver"]["Name"] == "json-file"


@pytest.mark.parametrize(
    ("volumes", "targets"),
    [
        ((), ["/dev/shm", "/tmp"]),
        (("/data", "//data/", "/tmp"), ["/data", "/dev/shm", "/tmp"]),
    ],
)
def test_tmp_shm_and_declared_volumes_are_sized_tmpfs(
    volumes: tuple[str, ...], targets: list[str]
) -> None:
    mounts = a_spec(image_volumes=volumes)["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert sorted(m["Target"] for m in mounts) == targets
    assert all(m["Type"] == "tmpfs" and m["TmpfsOptions"]["SizeBytes"] == 64 * MIB for m in mounts)
    assert next(m for m in mounts if m["Target"] == "/tmp")["TmpfsOptions"]["Mode"] == 0o1777


def test_a_runs_network_is_internal_and_its_own() -> None:
    network = network_spec("taskdash-run-1", side_labels(LABELS, "network"))
    assert network["Driver"] == "overlay" and network["Internal"] is True
    assert network["Attachable"] is False
    assert network["Labels"]["taskdash.role"] == "network"
    assert network["Labels"]["taskdash.run_id"] == "run-1"


@pytest.mark.parametrize(
    ("name", "info", "expected"),
    [
        # Only on this engine: by id, held to this node.
        ("taskdash/python:bookworm", {"Id": "sha256:1", "RepoDigests": []}, ("sha256:1", True)),
        # From a registry: by digest, anywhere.
        (
            "python:3.12",
            {"Id": "sha256:2", "RepoDigests": ["python@sha256:9"]},
            ("python@sha256:9", False),
        ),
        (
            "registry.local:5000/team/job:1",
            {"Id": "sha256:3", "RepoDigests": ["registry.local:5000/team/job@sha256:8"]},
            ("registry.local:5000/team/job@sha256:8", False),
        ),
    ],
)
def test_the_image_reference_nodes_use(
    name: str, info: dict[str, Any], expected: tuple[str, bool]
) -> None:
    reference, constraints = image_reference(name, info, "node7")
    assert (reference, constraints == ["node.id==node7"]) == expected


def task(state: str, err: str = "", code: int | None = None, **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Err": err}
    if code is not None:
        status["ContainerStatus"] = {"ContainerID": "c" * 64, "ExitCode": code}
    return {"Status": status, "Spec": {}, "CreatedAt": "2026-01-01T00:00:00Z"} | extra


@pytest.mark.parametrize(
    ("the_task", "exit_code", "refusal"),
    [
        (task("running", code=0), None, None),
        (task("complete", code=0), 0, None),
        (task("failed", "task: non-zero exit (7)", 7), 7, None),
        (task("rejected", "No such image: x"), None, "rejected"),
        (task("failed", "starting container failed: oci runtime error", 128), 128, "failed"),
        (task("shutdown", code=143), None, None),
    ],
)
def test_a_tasks_state_reads_as_an_exit_or_a_refusal(
    the_task: dict[str, Any], exit_code: int | None, refusal: str | None
) -> None:
    assert task_exit_code(the_task) == exit_code
    reason = refused(the_task)
    assert (reason is not None and f"({refusal})" in reason) == (refusal is not None)


def test_the_runs_task_is_the_first_iterations_not_the_retired_next_one() -> None:
    first = task("running", CreatedAt="2026-01-01T00:00:01Z")
    retired_next = task("pending", CreatedAt="2026-01-01T00:00:09Z")
    retired_next["Spec"] = {"Placement": {"Constraints": ["node.id==n", RETIRED]}}
    assert run_task([retired_next, first]) is first
    assert run_task([retired_next]) is None
    # A task a node turned down is replaced: the replacement is the run's.
    turned_down = task("rejected", "assigned node no longer meets constraints")
    replacement = task("running", CreatedAt="2026-01-01T00:00:02Z")
    assert run_task([turned_down, replacement]) is replacement
    assert run_task([turned_down]) is turned_down
    assert retired(retired_next["Spec"]) and not retired(first["Spec"])


def test_inspect_data_keeps_the_shape_and_no_secret_in_the_service_copy() -> None:
    service = {
        "ID": "svc1",
        "CreatedAt": "2026-01-01T00:00:00Z",
        "Spec": {"Name": "taskdash-run-1", **a_spec()},
    }
    view = inspect_view(service, task("complete", code=0), None)
    assert view["Id"] == "svc1" and view["Name"] == "taskdash-run-1"
    assert view["State"]["StartedAt"] == "2026-01-01T00:00:00Z"
    assert view["State"]["ExitCode"] == 0 and not view["State"]["Running"]
    redacted = redact_env(view, ["API_KEY"])
    assert redacted is not None
    assert "s3cret" not in str(redacted)


@pytest.mark.parametrize(
    ("ref", "container"),
    [("a" * 64, True), ("0123456789abcdef" * 4, True), ("o6s15agyw6xw73jlg76xsdf4s", False)],
)
def test_container_ids_and_swarm_ids_tell_apart(ref: str, container: bool) -> None:
    assert is_container_id(ref) is container
