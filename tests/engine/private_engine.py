"""A private Docker engine for tests that stop and start one, so the shared engine the rest of
the suite uses never notices: its own dockerd (and the containerd it starts), data root, exec
root, pid file, config file and socket in a fresh folder, started detached in its own session
with its output in a log file.

It runs in network and mount namespaces of its own (`unshare --net --mount`). With
`--bridge=none` a dockerd deletes the host's `docker0` at start (libnetwork's
removeDefaultBridgeInterface), which breaks the shared engine's default network; in a network
namespace of its own it only finds its own empty one. Its mounts (the data root, the
containers' root filesystems) stay in its mount namespace, so none is left on the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support import wait_for

# Short: a unix socket path (containerd's lives in the exec root) must stay under 108 bytes.
FOLDER_PARENT, FOLDER_PREFIX = "/tmp", "tdpe-"


def missing_tools() -> str | None:
    """Why a private engine cannot start here; None when it can."""
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    for tool in ("dockerd", "containerd", "unshare", "docker"):
        if shutil.which(tool) is None:
            return f"a private Docker engine needs `{tool}`"
    return None


class PrivateEngine:
    def __init__(self, *, live_restore: bool) -> None:
        self.live_restore = live_restore
        self.folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=FOLDER_PARENT))
        self.socket = self.folder / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log_path = self.folder / "dockerd.log"
        (self.folder / "daemon.json").write_text("{}\n")  # not the host's /etc/docker/daemon.json
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            "unshare", "--net", "--mount", "--propagation", "private", "--",
            "dockerd",
            "--config-file", str(self.folder / "daemon.json"),
            "--data-root", str(self.folder / "data"),
            "--exec-root", str(self.folder / "exec"),
            "--pidfile", str(self.folder / "docker.pid"),
            "-H", self.url,
            "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            *(["--live-restore"] if self.live_restore else []),
        ]  # fmt: skip

    def start(self) -> PrivateEngine:
        """Start dockerd (unshare execs it: the process is dockerd) and wait until it answers."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._answers, timeout=60, what=f"the private dockerd ({self.log_path})")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"private dockerd exited: {self.log_path.read_text()[-3000:]}")
        return self.docker("info", check=False).returncode == 0

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it; returns once dockerd has exited."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """A hung engine: dockerd stops answering but keeps its connections."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "-H", self.url, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def load_image(self, image: str) -> None:
        """Copy an image of the shared engine into this one (no registry is needed)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        assert save.stdout is not None
        try:
            loaded = subprocess.run(
                ["docker", "-H", self.url, "load", "-q"],
                stdin=save.stdout,
                capture_output=True,
                timeout=300,
            )
        finally:
            save.stdout.close()
            save.wait(timeout=60)
        assert loaded.returncode == 0 and save.returncode == 0, loaded.stderr

    def containers(self, *labels: str) -> list[str]:
        """Ids of every container (running or not) with all of `labels` (`key=value`)."""
        filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
        return self.docker("ps", "-aq", "--no-trunc", *filters).stdout.split()

    def inspect(self, container: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.docker("inspect", container).stdout)
        return found[0]

    def forget_container(self, container_id: str) -> None:
        """While stopped: make the engine lose a container, as a lost data root would."""
        assert self.process is None or self.process.poll() is not None, "stop the engine first"
        shutil.rmtree(self.folder / "data" / "containers" / container_id)

    def close(self) -> None:
        """Remove its containers, stop it, kill whatever of it is left (containerd, shims and
        their containers), and delete its folder."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.resume()
                if ids := self.docker("ps", "-aq", check=False).stdout.split():
                    self.docker("rm", "-fv", *ids, check=False)
                self.stop()
        finally:
            self._kill_leftovers()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """Processes started from this folder (found by it in their command line: nothing
        else has it) and their children, by pid."""
        ours = {pid for pid, command in processes() if str(self.folder) in command}
        children = {pid for pid, parent in parents() if parent in ours}
        for pid in ours | children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in ours | children):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)


def processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append((int(entry.name), command))
    return found


def parents() -> list[tuple[int, int]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                found.append((int(entry.name), int(stat.rpartition(")")[2].split()[1])))
    return found
