"""Python requirements: built once into a cached image, reused, failures reported in the log."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import Wheelhouse, require
from tests.support import LiveServer, create_task, logs, make_wheel, wait_run

SCRIPT = "import tdprobe\nprint(tdprobe.VALUE)\n"


def test_requirements_install_once_and_are_reused(
    client: httpx.Client, wheelhouse: Wheelhouse
) -> None:
    # A version no other test asks for, so this test sees the first install itself.
    version = f"2.0.{uuid.uuid4().int % 10**9}"
    make_wheel(wheelhouse.folder, "tdprobe", version, f"VALUE = 'fresh {version}'\n")
    requirement = f"tdprobe=={version}\n"

    first = create_task(client, SCRIPT, requirements=requirement)
    run = wait_run(client, first["task_id"], first["run_id"], timeout=120)
    first_log = logs(client, first["task_id"])
    assert run["status"] == "succeeded", first_log
    assert "requirements: installing" in first_log
    assert first_log.splitlines()[-1] == f"fresh {version}"

    second = create_task(client, SCRIPT, requirements=requirement)
    run = wait_run(client, second["task_id"], second["run_id"], timeout=60)
    second_log = logs(client, second["task_id"])
    assert run["status"] == "succeeded", second_log
    assert "requirements: reusing cached environment" in second_log
    assert "installing" not in second_log
    assert second_log.splitlines()[-1] == f"fresh {version}"


def test_the_run_itself_stays_offline_with_requirements(
    client: httpx.Client, wheelhouse: Wheelhouse
) -> None:
    script = "import os, tdprobe\nprint(sorted(os.listdir('/sys/class/net')))\n"
    created = create_task(client, script, requirements=wheelhouse.requirement)
    wait_run(client, created["task_id"], created["run_id"], timeout=120)
    assert logs(client, created["task_id"]).splitlines()[-1] == "['lo']"


def test_failed_install_fails_the_run_with_pips_output(client: httpx.Client) -> None:
    created = create_task(client, SCRIPT, requirements="tdprobe-does-not-exist==9.9\n")
    run = wait_run(client, created["task_id"], created["run_id"], timeout=120)
    text = logs(client, created["task_id"])
    assert run["status"] == "failed"
    assert "No matching distribution found for tdprobe-does-not-exist==9.9" in text
    assert "requirements: pip failed with exit code" in text


def test_requirements_from_the_real_index_through_the_ca_bundle(
    make_server: Callable[..., LiveServer],
) -> None:
    bundle = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
    require(Path(bundle).exists(), f"no CA bundle at {bundle}")
    live = make_server(
        pip_find_links="", pip_no_index="false", build_network="bridge", pip_ca_bundle=bundle
    )
    with live.client() as http:
        created = create_task(
            http, "import six\nprint('six', six.__version__)\n", requirements="six==1.16.0\n"
        )
        run = wait_run(http, created["task_id"], created["run_id"], timeout=240)
        text = logs(http, created["task_id"])
    assert run["status"] == "succeeded", text
    assert text.splitlines()[-1] == "six 1.16.0"


def test_a_wheel_folder_the_build_user_cannot_read_fails_saying_so(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    folder = tmp_path / "private-wheels"
    folder.mkdir(mode=0o700)
    live = make_server(pip_find_links=str(folder))
    with live.client() as http:
        created = create_task(http, SCRIPT, requirements="tdprobe\n")
        run = wait_run(http, created["task_id"], created["run_id"], timeout=60)
        text = logs(http, created["task_id"])
    assert run["status"] == "failed"
    assert f"TASKDASH_PIP_FIND_LINKS={folder} is not readable by the build's user 1000:1000" in text
