"""A package whose build step (setup.py) attacks the requirements build, against the real
engine: each attack, the outcome we expect, and what the committed image keeps."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from taskdash.core.config import load_settings
from taskdash.engine.build_network import BuildNetwork, host_nameservers, install_firewall
from taskdash.engine.docker import DockerEngine
from tests.conftest import require
from tests.support import LiveServer, create_task, logs, wait_for, wait_run

BASE_IMAGE = "taskdash/python:bookworm"
REPORT = "TDATTACK "
SECRET = "s3cret"
# Paths outside /deps and /tmp that a build step must not be able to change.
SYSTEM_PATHS = [
    "/etc/taskdash-probe",
    "/usr/lib/python3/dist-packages/taskdash_probe.py",
    "/usr/local/bin/taskdash-probe",
    "/root/taskdash-probe",
    "/taskdash-probe",
]

# Runs twice during pip's install (egg_info, then bdist_wheel); probes on the first. pip keeps a
# build step's output to itself unless the step fails, so the report goes straight to the
# container's stdout, which PID 1 (docker-init, the same uid) holds.
PROBE = r"""
import json, os, socket, struct, threading, time
from setuptools import setup


def gateway():
    for line in open("/proc/net/route").read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    return None


def connect(label, host, port, results):
    started = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=1).close()
        outcome = "connected"
    except ConnectionRefusedError:
        outcome = "refused"
    except TimeoutError:
        outcome = "timed out"
    except OSError as exc:
        outcome = "error %s" % exc.errno
    results[label] = [outcome, round(time.monotonic() - started, 2)]


def resolve(name, results):
    try:
        results["dns"] = socket.gethostbyname(name)
    except OSError as exc:
        results["dns"] = "error %s" % exc


def writable(path):
    try:
        with open(path, "w") as handle:
            handle.write("x")
    except OSError:
        return False
    os.unlink(path)
    return True


def readable(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def memory_holds(pid, needle):
    maps, mem = readable("/proc/%s/maps" % pid), None
    if maps is None:
        return None
    try:
        mem = open("/proc/%s/mem" % pid, "rb")
    except OSError:
        return None
    with mem:
        for line in maps.decode().splitlines():
            addresses, perms = line.split()[:2]
            start, end = (int(x, 16) for x in addresses.split("-"))
            if "r" not in perms or end - start > 256 << 20:
                continue
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


def hunt_secret():
    needle, found, processes = SECRET.encode(), [], []
    if needle in json.dumps(dict(os.environ)).encode():
        found.append("own environment")
    for folder, _, files in os.walk("/job"):
        for name in files:
            if needle in (readable(os.path.join(folder, name)) or b""):
                found.append(os.path.join(folder, name))
    for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
        if int(pid) == os.getpid():
            continue
        cmdline, environ = readable("/proc/%s/cmdline" % pid), readable("/proc/%s/environ" % pid)
        memory = memory_holds(pid, needle)
        for place, data in (("cmdline", cmdline), ("environ", environ)):
            if data and needle in data:
                found.append("/proc/%s/%s" % (pid, place))
        if memory:
            found.append("/proc/%s/mem" % pid)
        processes.append({
            "cmd": (cmdline or b"").replace(b"\0", b" ").decode(errors="replace")[:100],
            "environ": "denied" if environ is None else "read",
            "mem": "denied" if memory is None else "read",
        })
    return found, processes


def probe():
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    results = {}
    threads = [threading.Thread(target=resolve, args=("pypi.org", results))] if TARGETS else []
    for label, host, port in TARGETS:
        host = gateway() if host == "gateway" else host
        threads.append(threading.Thread(target=connect, args=(label, host, port, results)))
    for thread in threads:
        thread.start()
    found, processes = hunt_secret()
    for thread in threads:
        thread.join()
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cap_eff": status["CapEff"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "gateway": gateway(),
        "connections": results,
        "writable": {p: writable(p) for p in [*SYSTEM_PATHS, "/deps/probe", "/tmp/probe"]},
        "secret_found_in": found,
        "processes": processes,
    }


if not os.path.exists("/tmp/tdattack-probed"):
    open("/tmp/tdattack-probed", "w").close()
    with open("/proc/1/fd/1", "w") as out:
        out.write(REPORT + json.dumps(probe()) + "\n")
"""


def make_sdist(folder: Path, name: str, version: str, setup_py: str) -> Path:
    """A setup.py-based sdist, built by hand (no `python -m build` offline)."""
    root = f"{name}-{version}"
    files = {
        f"{root}/setup.py": setup_py.encode(),
        f"{root}/PKG-INFO": f"Metadata-Version: 1.0\nName: {name}\nVersion: {version}\n".encode(),
        f"{root}/{name}.py": f"VALUE = {version!r}\n".encode(),
    }
    path = folder / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    path.chmod(0o644)
    return path


def attack_setup(name: str, version: str, targets: list[Any], extra: str = "") -> str:
    """The attacking setup.py: the probe, then `extra` (module-level code), then setup()."""
    header = (
        # Reversed: pip reads this file into its memory, so the file must not hold the secret.
        f"SECRET = {SECRET[::-1]!r}[::-1]\n"
        f"TARGETS = {targets!r}\nSYSTEM_PATHS = {SYSTEM_PATHS!r}\nREPORT = {REPORT!r}\n"
    )
    footer = f"setup(name={name!r}, version={version!r}, py_modules=[{name!r}])\n"
    return header + PROBE + extra + "\n" + footer


def report_of(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith(REPORT)]
    assert lines, text
    report: dict[str, Any] = json.loads(lines[0].removeprefix(REPORT))
    return report


def deps_image_of(text: str) -> str:
    marker = "requirements: installing into "
    return next(line.split(marker)[1] for line in text.splitlines() if marker in line)


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def unique_version() -> str:
    return f"1.0.{uuid.uuid4().int % 10**9}"


@pytest.fixture(scope="module")
def attack_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TASKDASH_PIP_FIND_LINKS for these tests: readable by the build's user (uid 1000)."""
    folder = tmp_path_factory.mktemp("attacks")
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def rootless_base(docker_engine: None) -> Iterator[str]:
    """A custom base image as users bring them: USER root, no /deps or /job, its own CMD."""
    tag = f"taskdash-test/rootless-base:{os.getpid()}"
    dockerfile = (
        f"FROM {BASE_IMAGE}\nUSER root\nRUN rm -rf /deps /job\nENV TD_BASE=1\n"
        'CMD ["python3", "-c", "print(\'base cmd\')"]\n'
    )
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"],
        input=dockerfile,
        text=True,
        capture_output=True,
        check=True,
        timeout=120,
    )
    yield tag
    subprocess.run(["docker", "rmi", tag], capture_output=True)


@pytest.fixture()
def built_images() -> Iterator[list[str]]:
    """Requirements images a test built, removed after it (before any base image)."""
    tags: list[str] = []
    yield tags
    if tags:
        subprocess.run(["docker", "rmi", *tags], capture_output=True)


def prepare_build_network(data_dir: Path) -> None:
    """What the server does before a build, done here first so a neighbour can join."""

    async def prepare() -> None:
        engine = DockerEngine()
        await engine.open()
        try:
            settings = load_settings(data_dir=data_dir, build_network="taskdash-build")
            await BuildNetwork(settings, engine).prepare()
        finally:
            await engine.close()

    asyncio.run(prepare())


@pytest.fixture(scope="module")
def neighbour(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another container on taskdash-build, listening on port 8000; yields its address."""
    require(os.geteuid() == 0 and shutil.which("iptables") is not None, "needs root and iptables")
    prepare_build_network(tmp_path_factory.mktemp("network"))
    name = f"taskdash-test-neighbour-{os.getpid()}"
    docker(
        "run", "-d", "--rm", "--name", name, "--network", "taskdash-build", "--user", "1000:1000",
        BASE_IMAGE, "python3", "-m", "http.server", "8000",
    )  # fmt: skip
    try:
        probe = "import socket; socket.create_connection(('127.0.0.1', 8000), timeout=1)"
        wait_for(
            lambda: (
                subprocess.run(
                    ["docker", "exec", name, "python3", "-c", probe], capture_output=True
                ).returncode
                == 0
            ),
            timeout=30,
            what="the neighbour to listen",
        )
        yield docker(
            "inspect",
            "-f",
            '{{(index .NetworkSettings.Networks "taskdash-build").IPAddress}}',
            name,
        ).strip()
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


class Listener:
    """A host service on every address (0.0.0.0) that counts who reaches it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("0.0.0.0", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def test_a_build_step_is_fenced_in(
    make_server: Callable[..., LiveServer],
    attack_folder: Path,
    rootless_base: str,
    neighbour: str,
    listener: Listener,
    built_images: list[str],
) -> None:
    version = unique_version()
    live = make_server(
        build_network="taskdash-build", pip_find_links=str(attack_folder), pip_no_index="true"
    )
    targets = [
        ["taskdash_port", "gateway", live.port],
        ["host_service", "gateway", listener.port],
        ["metadata", "169.254.169.254", 80],
        ["neighbour", neighbour, 8000],
    ]
    make_sdist(attack_folder, "tdattack", version, attack_setup("tdattack", version, targets))
    script = "import os, tdattack\nprint('run', tdattack.VALUE, os.stat('/deps').st_uid)\n"
    with live.client() as http:
        created = create_task(
            http, script, requirements=f"tdattack=={version}\n", image=rootless_base
        )
        run = wait_run(http, created["task_id"], created["run_id"], timeout=120)
        text = logs(http, created["task_id"])
    built_images.append(deps_image_of(text))
    assert run["status"] == "succeeded", text
    # The custom base had neither /deps nor a non-root user: the run user got /deps anyway.
    assert text.splitlines()[-1] == f"run {version} 1000"

    seen = report_of(text)
    assert (seen["uid"], seen["gid"]) == (1000, 1000)
    assert seen["cap_eff"] == "0000000000000000"
    assert seen["no_new_privs"] == "1"
    connections = seen["connections"]
    # DNS still works (the host's nameservers are let through), so pip can find an index.
    assert not connections.pop("dns").startswith("error"), connections
    for label, (outcome, seconds) in connections.items():
        assert outcome in ("refused", "timed out"), (label, outcome)
        assert seconds < 2, (label, seconds)
    assert listener.accepted == 0
    assert not any(seen["writable"][path] for path in SYSTEM_PATHS), seen["writable"]
    assert seen["writable"]["/deps/probe"] and seen["writable"]["/tmp/probe"]
    assert seen["secret_found_in"] == []

    image = json.loads(docker("image", "inspect", deps_image_of(text)))[0]
    base = json.loads(docker("image", "inspect", rootless_base))[0]["Config"]
    config = image["Config"]
    assert config["Env"] == [*base["Env"], "PYTHONPATH=/deps"]
    assert config["Cmd"] == base["Cmd"]
    assert not config["Entrypoint"] and not base["Entrypoint"]
    assert config["User"] == "1000:1000"
    assert "PIP_" not in json.dumps(config)


def test_the_build_network_and_its_firewall(neighbour: str, tmp_path: Path) -> None:
    network = json.loads(docker("network", "inspect", "taskdash-build"))[0]
    assert network["Labels"]["taskdash.role"] == "build-network"
    assert network["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    interface = network["Options"]["com.docker.network.bridge.name"]
    # Prepared again (as each build does): the rules are there once, not twice.
    prepare_build_network(tmp_path)
    jumps = {
        "INPUT": f"-A INPUT -i {interface} -j TASKDASH-BUILD-INPUT",
        "DOCKER-USER": f"-A DOCKER-USER -i {interface} -j TASKDASH-BUILD-FORWARD",
    }
    for chain, jump in jumps.items():
        rules = subprocess.run(["iptables", "-S", chain], capture_output=True, text=True).stdout
        assert rules.splitlines().count(jump) == 1, rules
        assert rules.splitlines()[1] == jump, "taskdash's jump is not first"
    forward = subprocess.run(
        ["iptables", "-S", "TASKDASH-BUILD-FORWARD"], capture_output=True, text=True
    ).stdout
    for blocked in ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        assert f"-d {blocked} -j DROP" in forward
    for server in host_nameservers():
        assert f"-d {server}/32 -p udp -m udp --dport 53 -j RETURN" in forward


def test_without_the_bridge_on_this_host_the_firewall_says_why() -> None:
    problem = asyncio.run(install_firewall("td-missing0", []))
    assert problem is not None and "not on this host" in problem


class Index:
    """A PyPI-like simple index over HTTPS with basic auth, on the Docker bridge's gateway."""

    def __init__(self, folder: Path, host: str, files: dict[str, bytes]) -> None:
        self.cert = folder / "cert.pem"
        key = folder / "key.pem"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=taskdash-test",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-addext", f"subjectAltName=IP:{host}", "-keyout", str(key), "-out", str(self.cert),
            ],
            capture_output=True,
            check=True,
        )  # fmt: skip
        self.cert.chmod(0o644)
        self.requests: list[tuple[str, bool]] = []
        self.server = ThreadingHTTPServer((host, 0), self._handler(files))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://user:{SECRET}@{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self, files: dict[str, bytes]) -> type[BaseHTTPRequestHandler]:
        index = self
        expected = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                authorised = self.headers.get("Authorization") == expected
                index.requests.append((self.path, authorised))
                if not authorised:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="test"')
                    self.end_headers()
                    return
                body = self._body()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body or b"")

            def _body(self) -> bytes | None:
                if self.path.startswith("/files/"):
                    return files.get(self.path.removeprefix("/files/"))
                if self.path.startswith("/simple/"):
                    links = "".join(
                        f'<a href="/files/{name}#sha256={hashlib.sha256(data).hexdigest()}">'
                        f"{name}</a>"
                        for name, data in files.items()
                    )
                    return f"<html><body>{links}</body></html>".encode()
                return b"<html><body></body></html>" if self.path.startswith("/extra/") else None

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge (IPAM may leave Gateway out)."""
    network = json.loads(docker("network", "inspect", "bridge"))[0]
    gateway = next((c.get("Gateway") for c in network["IPAM"]["Config"] if c.get("Gateway")), "")
    if gateway:
        return str(gateway)
    interface = network["Options"]["com.docker.network.bridge.name"].encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        siocgifaddr = 0x8915
        packed = fcntl.ioctl(sock.fileno(), siocgifaddr, struct.pack("256s", interface[:15]))
    return socket.inet_ntoa(packed[20:24])


def test_a_build_step_cannot_read_the_index_credentials(
    make_server: Callable[..., LiveServer], tmp_path: Path, built_images: list[str]
) -> None:
    require(shutil.which("openssl") is not None, "openssl makes the test index's certificate")
    gateway = bridge_gateway()
    version = unique_version()
    sdist = make_sdist(tmp_path, "tdattack", version, attack_setup("tdattack", version, []))
    folder = tmp_path / "index"
    folder.mkdir(mode=0o755)
    index = Index(folder, gateway, {sdist.name: sdist.read_bytes()})
    try:
        live = make_server(
            build_network="bridge",
            pip_find_links="",
            pip_no_index="false",
            pip_index_url=f"{index.url}/simple",
            pip_extra_index_url=f"{index.url}/extra",
            pip_ca_bundle=str(index.cert),
        )
        with live.client() as http:
            created = create_task(http, "import tdattack\n", requirements=f"tdattack=={version}")
            run = wait_run(http, created["task_id"], created["run_id"], timeout=120)
            text = logs(http, created["task_id"])
    finally:
        index.close()
    built_images.append(deps_image_of(text))
    assert run["status"] == "succeeded", text
    # pip had the credentials: it fetched the sdist with them, over the CA bundle.
    assert (f"/files/{sdist.name}", True) in index.requests
    seen = report_of(text)
    assert seen["secret_found_in"] == []
    # PID 1 is docker-init, readable and clean; pip, started by PIP_BOOTSTRAP, is closed.
    pip = [p for p in seen["processes"] if p["cmd"].startswith("python3 -c import ctypes")]
    assert pip and pip[0]["environ"] == pip[0]["mem"] == "denied", seen["processes"]

    tag = deps_image_of(text)
    inspected = docker("image", "inspect", tag)
    history = docker("history", "--no-trunc", tag)
    assert SECRET not in text and SECRET not in inspected and SECRET not in history
    config = json.loads(inspected)[0]["Config"]
    base = json.loads(docker("image", "inspect", BASE_IMAGE))[0]["Config"]
    assert config["Env"] == [*base["Env"], "PYTHONPATH=/deps"]
    assert "PIP_" not in json.dumps(config)


def build_outcome(
    live: LiveServer, attack_folder: Path, extra: str
) -> tuple[dict[str, Any], str, float]:
    version = unique_version()
    make_sdist(attack_folder, "tdattack", version, attack_setup("tdattack", version, [], extra))
    started = time.monotonic()
    with live.client() as http:
        created = create_task(http, "import tdattack\n", requirements=f"tdattack=={version}")
        run = wait_run(http, created["task_id"], created["run_id"], timeout=120)
        return run, logs(http, created["task_id"]), time.monotonic() - started


def test_a_hanging_build_is_ended_as_failed(
    make_server: Callable[..., LiveServer], attack_folder: Path
) -> None:
    live = make_server(pip_find_links=str(attack_folder), build_timeout_seconds="3")
    run, text, seconds = build_outcome(live, attack_folder, "time.sleep(600)")
    assert run["status"] == "failed", text
    assert "requirements: installing took longer than 3 s; stopped" in text
    assert seconds < 30


def test_a_build_that_installs_too_much_is_stopped(
    make_server: Callable[..., LiveServer], attack_folder: Path
) -> None:
    live = make_server(pip_find_links=str(attack_folder), build_max_mb="16")
    fill = (
        "with open('/deps/filler', 'wb') as handle:\n"
        "    for _ in range(40):\n"
        "        handle.write(bytes(1 << 20))\n"
        "time.sleep(600)\n"
    )
    run, text, seconds = build_outcome(live, attack_folder, fill)
    assert run["status"] == "failed", text
    assert "requirements: the installed files passed the 16 MiB limit" in text
    # Stopped by the size poll, long before the 900 s time limit.
    assert seconds < 30


def test_only_binary_refuses_the_sdist(
    make_server: Callable[..., LiveServer], attack_folder: Path
) -> None:
    live = make_server(pip_find_links=str(attack_folder), pip_only_binary="true")
    run, text, _ = build_outcome(live, attack_folder, "")
    assert run["status"] == "failed", text
    assert "No matching distribution found for tdattack" in text
    assert REPORT not in text
