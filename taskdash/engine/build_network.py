"""The Docker network requirements builds use, and the host firewall rules that fence it in."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from taskdash.core.config import Settings
from taskdash.core.errors import EngineError
from taskdash.engine.build_spec import (
    BUILD_NETWORK,
    BUILD_NETWORK_LABELS,
    ICC_OPTION,
    bridge_interface,
    dns_servers,
    firewall_jumps,
    firewall_restore,
    network_config,
)
from taskdash.engine.docker import DockerEngine

log = logging.getLogger(__name__)

RESOLV_CONF = Path("/etc/resolv.conf")
# Where the engine looks instead when /etc/resolv.conf names only systemd-resolved's stub.
RESOLVED_CONF = Path("/run/systemd/resolve/resolv.conf")
UNFENCED = (
    "builds can reach this host's services on every address (taskdash's port included), "
    "the LAN and private ranges, and cloud metadata at 169.254.169.254"
)


class BuildNetwork:
    """Makes sure the network named by TASKDASH_BUILD_NETWORK is ready before each build.

    `taskdash-build` (the default) is created on first use: a bridge labelled
    taskdash.role=build-network, with traffic between its containers off
    (enable_icc=false), so one build cannot reach another. When taskdash runs as root on the
    Docker host with iptables, every build also (re)installs these rules for the bridge:

    - INPUT from the bridge: DNS (port 53) goes on to the host's own rules; everything else
      (taskdash's port and the host's other services, on any of its addresses) is dropped.
    - DOCKER-USER (forwarded traffic) from the bridge: DNS to the host's nameservers goes on;
      169.254.0.0/16 (cloud metadata), 10/8, 172.16/12, 192.168/16 and 100.64/10 are dropped.

    Otherwise a warning says what stays reachable. `none` and any other network name are
    used as given: no network is created and no rule installed.

    Still reachable from a build on taskdash-build: DNS, and the public internet, which pip
    needs to reach an index, and so does every package's build step (setup.py), which can
    download anything or send out what it can read. An index on the LAN is not reachable: name
    a network of your own for it. To close the build off entirely, give pip a folder of
    wheels and no network: TASKDASH_BUILD_NETWORK=none, TASKDASH_PIP_FIND_LINKS=/path/to/wheels
    and TASKDASH_PIP_NO_INDEX=true.
    """

    def __init__(self, settings: Settings, engine: DockerEngine) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = asyncio.Lock()
        self._warned: set[str] = set()

    async def prepare(self) -> None:
        if self.settings.build_network != BUILD_NETWORK:
            return
        async with self._lock:
            network = await self._ensure_network()
            interface = bridge_interface(network)
            problem = (
                await install_firewall(interface, host_nameservers())
                if interface
                else f"{BUILD_NETWORK} is not a bridge network"
            )
            if problem:
                self._warn(f"{BUILD_NETWORK}: no firewall rules ({problem}): {UNFENCED}")

    async def _ensure_network(self) -> dict[str, Any]:
        network = await self.engine.network_info(BUILD_NETWORK)
        if network is None:
            # False: another process created it in between; the inspect below finds it.
            if await self.engine.create_network(network_config()):
                log.info("created the Docker network %s for requirements builds", BUILD_NETWORK)
            network = await self.engine.network_info(BUILD_NETWORK)
            if network is None:
                raise EngineError(f"network {BUILD_NETWORK} vanished right after its creation")
        if not BUILD_NETWORK_LABELS.items() <= (network.get("Labels") or {}).items():
            self._warn(f"network {BUILD_NETWORK} exists but taskdash did not create it")
        if (network.get("Options") or {}).get(ICC_OPTION) != "false":
            self._warn(f"network {BUILD_NETWORK} lets its containers reach each other")
        return network

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)


def host_nameservers() -> list[str]:
    """The nameservers the engine's resolver forwards builds' queries to (the host's)."""
    servers = dns_servers(_read(RESOLV_CONF))
    return servers or dns_servers(_read(RESOLVED_CONF))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


async def install_firewall(interface: str, nameservers: list[str]) -> str | None:
    """Install the build bridge's rules; what made it impossible, or None when done."""
    problem = firewall_unavailable(interface)
    if problem:
        return problem
    code, error = await _run(["iptables-restore", "-w", "--noflush"], firewall_restore(nameservers))
    if code != 0:
        return f"iptables-restore failed: {error}"
    for chain, rule in firewall_jumps(interface):
        code, _ = await _run(["iptables", "-w", "-C", chain, *rule])
        if code != 0:
            code, error = await _run(["iptables", "-w", "-I", chain, "1", *rule])
            if code != 0:
                return f"iptables -I {chain} failed: {error}"
    return None


def firewall_unavailable(interface: str) -> str | None:
    """Why this process cannot install rules for `interface`, or None when it can."""
    if os.geteuid() != 0:
        return "taskdash does not run as root"
    if not (shutil.which("iptables") and shutil.which("iptables-restore")):
        return "iptables is not installed"
    if not Path("/sys/class/net", interface).exists():
        return f"the bridge {interface} is not on this host (is the Docker engine remote?)"
    return None


async def _run(command: list[str], stdin: str | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, error = await process.communicate(stdin.encode() if stdin is not None else None)
    return process.returncode or 0, error.decode(errors="replace").strip()
