"""Pure: the container of a requirements build, and the cache key of its image."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from taskdash.core.config import MIB, Settings
from taskdash.engine.spec import JOB_DIR, BindMount, ContainerSpec

DEPS_DIR = "/deps"
DEPS_REPOSITORY = "taskdash/deps"
BUILD_CA_PATH = "/etc/taskdash/pip-ca.pem"
BUILD_WHEELS_PATH = "/wheels"


def requirements_key(base_image_id: str, requirements: str) -> str:
    """Cache key of a requirements environment: same base image and same lines, same key."""
    lines = sorted(
        line.strip()
        for line in requirements.splitlines()
        if line.strip() and not line.strip().startswith("#")
    )
    digest = hashlib.sha256(base_image_id.encode() + b"\0" + "\n".join(lines).encode())
    return digest.hexdigest()[:24]


def pip_command(settings: Settings) -> list[str]:
    command = [
        "python3", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
        "--no-input", "--progress-bar", "off", "--target", DEPS_DIR,
        "-r", f"{JOB_DIR}/requirements.txt",
    ]  # fmt: skip
    if settings.pip_no_index:
        command.append("--no-index")
    if settings.pip_index_url:
        command += ["--index-url", settings.pip_index_url]
    if settings.pip_extra_index_url:
        command += ["--extra-index-url", settings.pip_extra_index_url]
    if settings.pip_find_links:
        command += ["--find-links", BUILD_WHEELS_PATH]
    return command


def build_spec(settings: Settings, *, image: str, labels: Mapping[str, str]) -> ContainerSpec:
    binds: list[BindMount] = []
    env = {
        "PIP_BREAK_SYSTEM_PACKAGES": "1",
        "PIP_ROOT_USER_ACTION": "ignore",
        "HOME": "/tmp",
    }
    if settings.pip_find_links:
        binds.append(BindMount(str(settings.pip_find_links), BUILD_WHEELS_PATH))
    if settings.pip_ca_bundle:
        binds.append(BindMount(str(settings.pip_ca_bundle), BUILD_CA_PATH))
        env["PIP_CERT"] = BUILD_CA_PATH
    return ContainerSpec(
        image=image,
        command=pip_command(settings),
        labels=labels,
        env=env,
        user="0:0",
        network=settings.build_network,
        memory_bytes=max(settings.run_memory_mb, 1024) * MIB,
        nano_cpus=2_000_000_000,
        pids_limit=1024,
        tmpfs_mb=0,
        read_only_root=False,
        binds=binds,
        # Root in the build needs to write /deps whoever owns it in the image; nothing else.
        cap_add=("CHOWN", "DAC_OVERRIDE", "FOWNER"),
        log_max_bytes=2 * settings.log_max_bytes,
    )
