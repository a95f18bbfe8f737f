"""Pure: the container of a requirements build, what goes into it, the image it leaves, the
cache key of that image, and the network and firewall rules builds use.

A build runs other people's code (a package's setup.py), so what the container holds is
chosen for what the commit records: the engine keeps the container's command and environment
in the image (`ContainerConfig` and the history's `created_by`) whatever config the commit
passes. Index URLs, which may hold credentials, and the CA path therefore never appear in the
command or the environment: they reach pip through a file in the build's own /job volume
(volumes are never committed), read and deleted by `PIP_BOOTSTRAP` before pip starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

from taskdash.core.config import MIB, Settings
from taskdash.engine.spec import JOB_DIR, LABEL_PREFIX, BindMount, ContainerSpec, user_ids

DEPS_DIR = "/deps"
DEPS_REPOSITORY = "taskdash/deps"
# The build's mounts sit inside its /job volume, so their mount points never reach the image.
BUILD_CA_PATH = f"{JOB_DIR}/pip-ca.pem"
BUILD_WHEELS_PATH = f"{JOB_DIR}/wheels"
REQUIREMENTS_PATH = f"{JOB_DIR}/requirements.txt"
SOURCES_PATH = f"{JOB_DIR}/pip-sources.json"

# Runs as `python3 -c PIP_BOOTSTRAP SOURCES_PATH install ...`. It reads the index options and
# deletes their file, then makes itself non-dumpable (prctl PR_SET_DUMPABLE=4, 0): a package's
# build step runs as the same uid, and a non-dumpable process's /proc/<pid>/environ, mem, maps
# and fd, and ptrace, are closed to it. Its own /proc/<pid>/cmdline stays readable, which is why
# the options are not arguments. One path stays open: for a pyproject-based sdist pip installs
# the build dependencies with a child pip that gets the index URLs as arguments, readable in
# /proc while it runs; only TASKDASH_PIP_ONLY_BINARY=true (no build step at all) closes that.
# HOME and PIP_BREAK_SYSTEM_PACKAGES are set here, not in the container's environment, which
# the commit would keep.
PIP_BOOTSTRAP = """\
import ctypes, json, os, runpy, sys
with open(sys.argv[1]) as file:
    sources = json.load(file)
os.unlink(sys.argv[1])
if ctypes.CDLL(None, use_errno=True).prctl(4, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
os.environ.update(HOME="/tmp", PIP_BREAK_SYSTEM_PACKAGES="1")
sys.argv = ["pip", *sys.argv[2:], *sources]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""


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
    """The build container's command: nothing in it names an index or holds a credential."""
    command = [
        "python3", "-c", PIP_BOOTSTRAP, SOURCES_PATH,
        "install", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
        "--progress-bar", "off", "--target", DEPS_DIR, "-r", REQUIREMENTS_PATH,
    ]  # fmt: skip
    if settings.pip_no_index:
        command.append("--no-index")
    if settings.pip_find_links:
        command += ["--find-links", BUILD_WHEELS_PATH]
    if settings.pip_only_binary:
        # Wheels only: no package's build step (setup.py) runs at all.
        command += ["--only-binary", ":all:"]
    return command


def pip_sources(settings: Settings) -> list[str]:
    """pip's options that may hold credentials, for the file PIP_BOOTSTRAP reads and deletes.
    With --no-index pip would ignore the index URLs, so they are left out of the build too."""
    options: list[str] = []
    if not settings.pip_no_index and settings.pip_index_url:
        options += ["--index-url", settings.pip_index_url]
    if not settings.pip_no_index and settings.pip_extra_index_url:
        options += ["--extra-index-url", settings.pip_extra_index_url]
    if settings.pip_ca_bundle:
        options += ["--cert", BUILD_CA_PATH]
    return options


def build_spec(
    settings: Settings,
    *,
    image: str,
    labels: Mapping[str, str],
    image_volumes: Sequence[str] = (),
) -> ContainerSpec:
    """A build as the run user with no capabilities: /deps is made theirs by `build_archive`
    before start, so root is not needed whoever owns /deps in the image. `image_volumes`, the
    VOLUME paths the image declares, get a tmpfs, so nothing is written to the host's disk
    beyond the layer whose size is capped."""
    binds: list[BindMount] = []
    if settings.pip_find_links:
        binds.append(BindMount(str(settings.pip_find_links), BUILD_WHEELS_PATH))
    if settings.pip_ca_bundle:
        binds.append(BindMount(str(settings.pip_ca_bundle), BUILD_CA_PATH))
    return ContainerSpec(
        image=image,
        command=pip_command(settings),
        labels=labels,
        # Nothing of our own: the commit appends every variable of the container that the
        # image's config does not name.
        env={},
        user=settings.run_user,
        network=settings.build_network,
        memory_bytes=settings.build_memory_mb * MIB,
        nano_cpus=2_000_000_000,
        pids_limit=settings.build_pids_limit,
        tmpfs_mb=settings.build_tmpfs_mb,
        # /deps is written into the container's own layer, which the commit keeps, and the
        # engine copies files only into a writable root.
        read_only_root=False,
        binds=binds,
        cap_add=(),
        log_max_bytes=2 * settings.log_max_bytes,
        image_volumes=tuple(image_volumes),
        # A sandboxing runtime chosen for runs holds the build's untrusted code as well.
        runtime=settings.run_runtime,
    )


def readable_by(user: str, mode: int, owner: int, group: int) -> bool:
    """Whether `user` (uid:gid, with no capabilities) may read a file, or list a folder, with
    this `st_mode` and these owners: a host file the build mounts must pass."""
    uid, gid = user_ids(user)
    needed = 0o5 if stat.S_ISDIR(mode) else 0o4
    shift = 6 if owner == uid else 3 if group == gid else 0
    return (mode >> shift) & needed == needed


def build_archive(settings: Settings, requirements: str) -> bytes:
    """The tar copied into "/" of the created build container: /deps and /job owned by the
    run user (whoever owned them in the image), the requirements and pip's sources file."""
    uid, gid = user_ids(settings.run_user)
    sources = json.dumps(pip_sources(settings)).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content, mode in (
            (DEPS_DIR, None, 0o755),
            (JOB_DIR, None, 0o700),
            (REQUIREMENTS_PATH, requirements.encode(), 0o400),
            (SOURCES_PATH, sources, 0o400),
        ):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.uid, info.gid, info.mode = uid, gid, mode
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def deps_image_config(base: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The config of the committed image: the base image's (`base` is its inspect `Config`)
    with /deps on PYTHONPATH and the run user. The engine fills what this leaves empty from
    the build container's config, so every field that matters is given."""
    env = [str(item) for item in base.get("Env") or []]
    old_path = next((item[11:] for item in env if item.startswith("PYTHONPATH=")), "")
    env = [item for item in env if not item.startswith("PYTHONPATH=")]
    env.append(f"PYTHONPATH={DEPS_DIR}:{old_path}" if old_path else f"PYTHONPATH={DEPS_DIR}")
    return {
        "Env": env,
        "Cmd": base.get("Cmd"),
        # [] rather than null: null would take the build container's entrypoint ([""]).
        "Entrypoint": base.get("Entrypoint") or [],
        "User": settings.run_user,
        "WorkingDir": base.get("WorkingDir") or "",
        "Labels": dict(base.get("Labels") or {}),
    }


# The build network -----------------------------------------------------------------------

BUILD_NETWORK = "taskdash-build"
# The bridge's interface name, fixed so the firewall rules can name it (at most 15 chars).
BUILD_BRIDGE = "taskdash-build"
BUILD_NETWORK_LABELS = {f"{LABEL_PREFIX}role": "build-network"}
ICC_OPTION = "com.docker.network.bridge.enable_icc"
FIREWALL_INPUT_CHAIN = "TASKDASH-BUILD-INPUT"
FIREWALL_FORWARD_CHAIN = "TASKDASH-BUILD-FORWARD"
# Link-local (cloud metadata at 169.254.169.254), the private ranges and carrier-grade NAT.
BLOCKED_RANGES = (
    "169.254.0.0/16",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
)


def network_config() -> dict[str, Any]:
    """The Engine API body that creates the build network."""
    return {
        "Name": BUILD_NETWORK,
        "Driver": "bridge",
        "CheckDuplicate": True,
        "Options": {
            ICC_OPTION: "false",
            "com.docker.network.bridge.name": BUILD_BRIDGE,
        },
        "Labels": dict(BUILD_NETWORK_LABELS),
    }


def bridge_interface(network: Mapping[str, Any]) -> str | None:
    """The host interface of a bridge network (from its inspect data); None for other drivers."""
    if network.get("Driver") != "bridge":
        return None
    options = network.get("Options") or {}
    return str(options.get("com.docker.network.bridge.name") or f"br-{str(network['Id'])[:12]}")


def dns_servers(resolv_conf: str) -> list[str]:
    """The IPv4 nameservers of a resolv.conf, loopback ones left out (the engine skips them)."""
    found = []
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            address = fields[1]
            parts = address.split(".")
            if len(parts) == 4 and all(p.isdigit() for p in parts) and parts[0] != "127":
                found.append(address)
    return found


def firewall_restore(nameservers: Sequence[str]) -> str:
    """`iptables-restore --noflush` input that (re)fills taskdash's two chains in one step.

    INPUT from the bridge (the host itself, on every address): only DNS (port 53) goes on to
    the host's own rules, the rest is dropped. FORWARD from the bridge: DNS to the host's
    nameservers goes on (the engine's resolver forwards queries from inside the container, and
    nameservers are often in the ranges below), then link-local and private ranges are dropped.
    """
    lines = ["*filter", f":{FIREWALL_INPUT_CHAIN} - [0:0]", f":{FIREWALL_FORWARD_CHAIN} - [0:0]"]
    for proto in ("udp", "tcp"):
        lines.append(f"-A {FIREWALL_INPUT_CHAIN} -p {proto} --dport 53 -j RETURN")
    lines.append(f"-A {FIREWALL_INPUT_CHAIN} -j DROP")
    for server in nameservers:
        for proto in ("udp", "tcp"):
            lines.append(
                f"-A {FIREWALL_FORWARD_CHAIN} -d {server}/32 -p {proto} --dport 53 -j RETURN"
            )
    for blocked in BLOCKED_RANGES:
        lines.append(f"-A {FIREWALL_FORWARD_CHAIN} -d {blocked} -j DROP")
    return "\n".join([*lines, "COMMIT", ""])


def firewall_jumps(interface: str) -> list[tuple[str, list[str]]]:
    """(chain, rule) pairs that send the bridge's traffic into taskdash's chains; each is
    inserted first in its chain, so no earlier ACCEPT lets the traffic past."""
    return [
        ("INPUT", ["-i", interface, "-j", FIREWALL_INPUT_CHAIN]),
        ("DOCKER-USER", ["-i", interface, "-j", FIREWALL_FORWARD_CHAIN]),
    ]
