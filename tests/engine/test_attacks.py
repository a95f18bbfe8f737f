"""The attack battery: real scripts in real containers through the real server, each asserting
what the hardening lets it do (after engineer-man/piston's tests/)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import LiveServer, create_task, get_run, logs, wait_for, wait_run

MIB = 1024 * 1024
TMPFS_BYTES = 64 * MIB  # TASKDASH_RUN_TMPFS_MB's default: the size of each tmpfs of a run
MARGIN_SECONDS = 5.0

# Each attempt prints "<what> <outcome>", the outcome being "done" or the errno's name.
ATTEMPT = """
import errno, os
def attempt(what, action):
    try:
        action()
        print(what, "done")
    except OSError as exc:
        print(what, errno.errorcode.get(exc.errno, "blocked"))
"""


def finished(
    client: httpx.Client, script: str, kind: str = "py", **form: Any
) -> tuple[dict[str, Any], str]:
    """Run `script` as a new task to its end: the run and its log."""
    created = create_task(client, script, kind=kind, **form)
    run = wait_run(client, created["task_id"], created["run_id"])
    return run, logs(client, created["task_id"])


def succeeded(client: httpx.Client, script: str, kind: str = "py", **form: Any) -> list[str]:
    run, text = finished(client, script, kind, **form)
    assert run["status"] == "succeeded", text
    return text.splitlines()


def started(client: httpx.Client, script: str, marker: str, **form: Any) -> dict[str, Any]:
    """A new task whose run has printed `marker` and holds its container open."""
    created = create_task(client, script, **form)
    wait_for(
        lambda: marker in logs(client, created["task_id"]).splitlines(),
        what=f"the script to print {marker!r}",
    )
    return created


def container_of(client: httpx.Client, task_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/{task_id}").json()
    assert body["source"] == "live", body
    container: dict[str, Any] = body["container"]
    return container


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def host_files(directory: str) -> dict[str, int]:
    """Every file under a directory of the engine's host, with its size."""
    if os.access(directory, os.R_OK | os.X_OK):
        return {
            os.path.relpath(os.path.join(root, name), directory): os.path.getsize(
                os.path.join(root, name)
            )
            for root, _, names in os.walk(directory)
            for name in names
        }
    # Not readable by the test's user (only root reads /var/lib/docker): ask a container.
    listing = docker(
        "run", "--rm", "--network", "none", "--user", "0:0",
        "--mount", f"type=bind,src={directory},dst=/host,readonly",
        "taskdash/shell:bookworm", "find", "/host", "-type", "f", "-printf", "%P %s\\n",
    )  # fmt: skip
    return {
        name: int(size) for name, size in (line.rsplit(" ", 1) for line in listing.splitlines())
    }


# --- who the script is --------------------------------------------------------------------------


def test_the_script_is_not_root_and_cannot_become_root(client: httpx.Client) -> None:
    script = ATTEMPT + (
        "print('ids', os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n"
        "attempt('setuid(0)', lambda: os.setuid(0))\n"
        "attempt('setgid(0)', lambda: os.setgid(0))\n"
    )
    assert succeeded(client, script) == [
        "ids 1000 1000 1000 [1000]",
        "setuid(0) EPERM",
        "setgid(0) EPERM",
    ]


PROC_STATUS = """
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
    print(key, status[key].strip())
"""


def test_no_capabilities_no_new_privileges_and_seccomp_on(client: httpx.Client) -> None:
    no_caps = [
        f"{key} 0000000000000000" for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    ]
    # Seccomp 2 is filter mode: the engine's default profile.
    assert succeeded(client, PROC_STATUS) == [*no_caps, "NoNewPrivs 1", "Seccomp 2"]


def test_a_user_namespace_is_refused(client: httpx.Client) -> None:
    # The engine's seccomp profile allows unshare only with CAP_SYS_ADMIN.
    script = (
        "import ctypes, errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "CLONE_NEWUSER = 0x10000000\n"
        "print('unshare', libc.unshare(CLONE_NEWUSER), errno.errorcode[ctypes.get_errno()])\n"
    )
    assert succeeded(client, script) == ["unshare -1 EPERM"]


def test_no_server_environment_is_visible(client: httpx.Client, server: LiveServer) -> None:
    script = "import json, os\nprint(json.dumps(dict(os.environ)))\n"
    (line,) = succeeded(client, script, env=json.dumps({"MINE": "visible"}))
    seen = json.loads(line)
    assert seen["MINE"] == "visible"
    assert [key for key in seen if key.startswith("TASKDASH_")] == []
    server_env = server.environment()
    secrets = {server_env["TASKDASH_DATA_DIR"], server_env["TASKDASH_INSTANCE_ID"]}
    assert not secrets & set(seen.values())
    assert "DOCKER_HOST" not in seen


def test_no_docker_socket(client: httpx.Client) -> None:
    script = (
        "for path in /var/run/docker.sock /run/docker.sock; do\n"
        '  if [ -e "$path" ]; then echo "$path present"; else echo "$path absent"; fi\n'
        "done\n"
    )
    assert succeeded(client, script, kind="sh") == [
        "/var/run/docker.sock absent",
        "/run/docker.sock absent",
    ]


# --- network --------------------------------------------------------------------------------


def test_only_the_loopback_interface(client: httpx.Client) -> None:
    assert succeeded(client, "import os\nprint(*sorted(os.listdir('/sys/class/net')))\n") == ["lo"]


def test_no_egress_tcp_udp_or_dns(client: httpx.Client, server: LiveServer) -> None:
    script = ATTEMPT + (
        "import socket\n"
        "port = int(os.environ['SERVER_PORT'])\n"
        "def tcp(host, port):\n"
        "    with socket.create_connection((host, port), timeout=3):\n"
        "        pass\n"
        "def udp(host, port):\n"
        "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:\n"
        "        sock.sendto(b'x', (host, port))\n"
        "attempt('tcp to the taskdash port', lambda: tcp('127.0.0.1', port))\n"
        "attempt('tcp to a public address', lambda: tcp('1.1.1.1', 443))\n"
        "attempt('udp to a public address', lambda: udp('1.1.1.1', 53))\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 443)\n"
        "    print('dns resolved')\n"
        "except socket.gaierror:\n"
        "    print('dns failed')\n"
    )
    assert succeeded(client, script, env=json.dumps({"SERVER_PORT": str(server.port)})) == [
        # 127.0.0.1 is the container's own loopback: the host's listener is not there.
        "tcp to the taskdash port ECONNREFUSED",
        "tcp to a public address ENETUNREACH",
        "udp to a public address ENETUNREACH",
        "dns failed",
    ]


# --- processes and memory -------------------------------------------------------------------

FORK_BOMB = """
import os, subprocess, time
print("bombing", flush=True)
subprocess.Popen(["/bin/bash", "-c", "bomb() { bomb | bomb & }; bomb"], stderr=subprocess.DEVNULL)
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print("fork refused", flush=True)
time.sleep(120)
"""


def test_fork_bomb_is_contained_while_a_neighbour_runs(
    make_server: Callable[..., LiveServer],
) -> None:
    with make_server(max_concurrent_runs="2").client() as http:
        bomb = started(http, FORK_BOMB, "fork refused", timeout_seconds=60)
        assert succeeded(http, "echo neighbour\n", kind="sh") == ["neighbour"]
        assert http.get("/healthz").status_code == 200
        assert get_run(http, bomb["task_id"], bomb["run_id"])["status"] == "running"
        assert http.post(f"/task/{bomb['task_id']}/stop").json()["status"] == "stopped"


def test_memory_bomb_is_killed_and_says_why(client: httpx.Client) -> None:
    script = "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))\n"
    run, _ = finished(client, script, memory_mb=64, timeout_seconds=60)
    assert (run["status"], run["exit_code"]) == ("failed", 137)
    assert "out of memory" in run["error"]
    assert client.get("/healthz").status_code == 200


IGNORES_TERM = "trap '' TERM\necho ready\nwhile :; do sleep 1; done\n"


def test_a_script_ignoring_term_is_stopped_after_the_grace(
    make_server: Callable[..., LiveServer],
) -> None:
    grace = 1
    with make_server(stop_grace_seconds=str(grace)).client() as http:
        created = started(http, IGNORES_TERM, "ready", kind="sh")
        began = time.monotonic()
        response = http.post(f"/task/{created['task_id']}/stop")
        took = time.monotonic() - began
    assert response.json()["status"] == "stopped"
    assert grace - 0.2 <= took <= grace + MARGIN_SECONDS


def test_a_script_ignoring_term_times_out(client: httpx.Client) -> None:
    timeout, grace = 1, 5  # TASKDASH_STOP_GRACE_SECONDS's default
    run, text = finished(client, IGNORES_TERM, kind="sh", timeout_seconds=timeout)
    assert run["status"] == "timed_out", text
    assert "timed out after 1 s" in run["error"]
    assert timeout <= run["duration_seconds"] <= timeout + grace + MARGIN_SECONDS


# --- files ----------------------------------------------------------------------------------

FILL_TMP = """
import errno, os
print("before", sorted(os.listdir("/tmp")), sorted(os.listdir("/dev/shm")))
written = 0
try:
    with open("/tmp/fill", "wb") as handle:
        while True:
            written += handle.write(b"x" * 1024 * 1024)
except OSError as exc:
    print("stopped by", errno.errorcode[exc.errno], "after", written // (1024 * 1024), "MiB")
open("/dev/shm/left", "w").close()
"""


def test_filling_tmp_is_enospc_and_the_next_run_starts_empty(client: httpx.Client) -> None:
    created = create_task(client, FILL_TMP)
    task_id = created["task_id"]
    first = wait_run(client, task_id, created["run_id"])
    second_id = client.put(f"/task/{task_id}").json()["run_id"]
    second = wait_run(client, task_id, second_id)
    expected = f"before [] []\nstopped by ENOSPC after {TMPFS_BYTES // MIB} MiB\n"
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")
    assert logs(client, task_id, created["run_id"]) == logs(client, task_id, second_id) == expected


def test_the_script_cannot_change_job_or_itself(client: httpx.Client) -> None:
    script = ATTEMPT + (
        "import stat\n"
        "me = '/job/main.py'\n"
        "for path in ('/job', me):\n"
        "    info = os.stat(path)\n"
        "    print(path, info.st_uid, info.st_gid, oct(stat.S_IMODE(info.st_mode)))\n"
        "attempt('append to itself', lambda: open(me, 'a').close())\n"
        "attempt('chmod itself', lambda: os.chmod(me, 0o777))\n"
        "attempt('remove itself', lambda: os.unlink(me))\n"
        "attempt('create a file in /job', lambda: open('/job/new', 'w').close())\n"
        "attempt('create a directory in /job', lambda: os.mkdir('/job/new'))\n"
    )
    assert succeeded(client, script) == [
        "/job 0 0 0o755",
        "/job/main.py 0 0 0o555",
        "append to itself EACCES",
        "chmod itself EPERM",
        "remove itself EACCES",
        "create a file in /job EACCES",
        "create a directory in /job EACCES",
    ]


def test_the_root_filesystem_is_read_only(client: httpx.Client) -> None:
    script = ATTEMPT + (
        "for path in ('/probe', '/usr/local/bin/probe', '/home/runner/probe', '/var/tmp/probe'):\n"
        "    attempt(path, lambda: open(path, 'a').close())\n"
    )
    assert succeeded(client, script) == [
        "/probe EROFS",
        "/usr/local/bin/probe EROFS",
        "/home/runner/probe EROFS",
        "/var/tmp/probe EROFS",
    ]


FILL_EVERYTHING = """
import errno, json, os, time
CHUNK = b"x" * (1024 * 1024)
def fill(path):
    written = 0
    try:
        with open(path, "ab") as handle:
            while written < 1024 * len(CHUNK):
                written += handle.write(CHUNK)
                handle.flush()
    except OSError as exc:
        return written, errno.errorcode[exc.errno]
    return written, "no limit"
targets = ["/", "/job", "/home/runner", "/var/tmp", "/run", "/dev/shm", "/tmp"]
seen = {target: fill(os.path.join(target, "fill")) for target in targets}
for host_file in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
    seen[host_file] = fill(host_file)
print(json.dumps(seen))
print("holding", flush=True)
time.sleep(120)
"""


def test_filling_every_writable_place_leaves_nothing_on_the_host(
    make_server: Callable[..., LiveServer],
) -> None:
    size = 16 * MIB  # not Docker's 64 MiB default for /dev/shm: the setting must reach it
    with make_server(run_tmpfs_mb=str(size // MIB)).client() as client:
        created = started(client, FILL_EVERYTHING, "holding")
        task_id = created["task_id"]
        seen = json.loads(logs(client, task_id).splitlines()[0])
        container = container_of(client, task_id)
        (inspected,) = json.loads(docker("inspect", "--size", container["Id"]))
        (job,) = [m for m in inspected["Mounts"] if m["Destination"] == "/job"]
        job_files = host_files(job["Source"])
        assert client.post(f"/task/{task_id}/stop").json()["status"] == "stopped"

    for place in ("/", "/home/runner", "/var/tmp", "/run"):
        assert seen[place] == [0, "EROFS"], place
    assert seen["/job"] == [0, "EACCES"]
    for place in ("/dev/shm", "/tmp"):
        written, error = seen[place]
        assert error == "ENOSPC" and size - MIB <= written <= size, place
    # The engine's files for the container (bind-mounted from the host) are not the run's.
    for host_file in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
        assert seen[host_file][0] == 0 and seen[host_file][1] in {"EROFS", "EACCES"}, host_file

    # Nothing reached the container's layer or its /job volume on the host's disk.
    assert inspected["SizeRw"] <= 4096
    assert [m["Destination"] for m in inspected["Mounts"]] == ["/job"]
    assert job_files == {"main.py": len(FILL_EVERYTHING.encode())}
    gone = subprocess.run(["docker", "volume", "inspect", job["Name"]], capture_output=True)
    assert gone.returncode != 0, "the run's /job volume should be removed with its container"


RUNAWAY_OUTPUT = """
import time
for i in range(8192):
    print("x" * 500, i)
print("holding", flush=True)
time.sleep(120)
"""


def test_runaway_output_is_capped_on_the_host(make_server: Callable[..., LiveServer]) -> None:
    cap = 64 * 1024
    live = make_server(log_max_bytes=str(cap))
    with live.client() as http:
        created = create_task(http, RUNAWAY_OUTPUT)
        task_id, run_id = created["task_id"], created["run_id"]
        wait_for(lambda: http.get(f"/{task_id}").json()["source"] == "live", what="a container")
        container = container_of(http, task_id)
        wait_for(
            lambda: docker("logs", "--tail", "1", container["Id"]).strip() == "holding",
            what="the script to print everything",
        )
        log_path = container["LogPath"]
        engine_log = host_files(os.path.dirname(log_path))[os.path.basename(log_path)]
        stored = (live.data_dir / "logs" / f"{run_id}.log").stat().st_size
        assert http.post(f"/task/{task_id}/stop").json()["status"] == "stopped"
    # The script printed about 4 MiB; the engine keeps at most max-size (twice the stored cap)
    # plus the line that crossed it, and the stored log the cap.
    assert engine_log <= 2 * cap + 1024
    assert stored <= cap


# --- custom images --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trap_image(docker_engine: None) -> Iterator[str]:
    """An image declaring a VOLUME and an ENTRYPOINT that would fail every run, built offline."""
    tag = f"taskdash-test/trap:{uuid.uuid4().hex[:12]}"
    base = docker("create", "taskdash/shell:bookworm", "true").strip()
    try:
        docker(
            "commit", "--change", "VOLUME /data", "--change", 'ENTRYPOINT ["/bin/false"]', base, tag
        )
    finally:
        docker("rm", base)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


FILL_DATA = """
echo "the script runs"
awk '$2 == "/data" { print "/data is", $3 }' /proc/mounts
head -c 200000000 /dev/zero > /data/fill 2>/dev/null || echo "refused"
echo "kept $(wc -c < /data/fill) bytes"
"""


def test_a_custom_image_cannot_replace_the_command_or_keep_a_volume(
    client: httpx.Client, trap_image: str
) -> None:
    created = create_task(client, FILL_DATA, kind="sh", image=trap_image)
    run = wait_run(client, created["task_id"], created["run_id"])
    text = logs(client, created["task_id"])
    assert run["status"] == "succeeded", text
    lines = text.splitlines()
    assert lines[:3] == ["the script runs", "/data is tmpfs", "refused"]
    assert lines[3] == f"kept {TMPFS_BYTES} bytes"
    kept = client.get(f"/{created['task_id']}").json()["container"]
    assert [m["Destination"] for m in kept["Mounts"]] == ["/job"]
    assert kept["Config"]["Entrypoint"] is None
