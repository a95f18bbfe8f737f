"""Clients that cost the server, against a real one: slow and stalled clients are cut off
after a bounded time while others are served (raw sockets); 200 big uploads at once leave its
memory bounded by TASKDASH_BODY_BUFFER_MB, and it comes back down after.

The server is `python -m taskdash.serve` with TASKDASH_BODY_TIMEOUT_SECONDS of BODY_SECONDS
instead of 60 s, so the suite does not wait a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from taskdash import create_app
from taskdash.core.config import load_settings
from taskdash.serve import KEEP_ALIVE_SECONDS
from tests.support import LiveServer, add_token, bearer, wait_for

BODY_SECONDS = 3.0
# Scheduling on a busy 2-core machine: a cut may come this much after its limit.
SLACK = 2.5
SLOW_CLIENTS = 12
MIB = 1024 * 1024
UPLOADS = 100
BUFFER_MB = 16
# What may stay after a burst: Python's small-object arenas that 200 requests at once touched.
RETAINED = 32 * MIB


@dataclass(frozen=True)
class Target:
    server: LiveServer
    token: str

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def open_descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def memory(self, field: str = "VmRSS") -> int:
        """Bytes of the server process's resident memory (VmHWM: its peak since reset_peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")


def start_target(folder: Path, **env: str) -> Target:
    data_dir = folder / "data"
    token = add_token(data_dir, "slow", "operator")
    return Target(LiveServer(data_dir, env=env).start(), token)


@pytest.fixture(scope="module")
def target(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A server whose bodies must arrive within BODY_SECONDS."""
    started = start_target(
        tmp_path_factory.mktemp("slow"), TASKDASH_BODY_TIMEOUT_SECONDS=str(BODY_SECONDS)
    )
    yield started
    started.server.stop()


@pytest.fixture(scope="module")
def budgeted(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A server that admits at most BUFFER_MB of request bodies at once (the default body
    timeout, so an upload waiting for room is not cut off)."""
    started = start_target(
        tmp_path_factory.mktemp("budget"), TASKDASH_BODY_BUFFER_MB=str(BUFFER_MB)
    )
    yield started
    started.server.stop()


@dataclass(frozen=True)
class Cut:
    seconds: float
    answer: bytes


def upload_request(target: Target) -> tuple[bytes, bytes]:
    """A multipart upload's head and body (the body never gets there in full)."""
    boundary = "slow-client"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.py"\r\n\r\n'
        + "print('never')\n" * 200
        + f"\r\n--{boundary}--\r\n"
    ).encode()
    head = (
        f"POST /task/py HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n"
        f"Authorization: Bearer {target.token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def schedule_request(target: Target) -> tuple[bytes, bytes]:
    """A JSON body (read whole by the route, not parsed as a form)."""
    body = json.dumps({"cron_expression": "*/5 * * * *", "timezone": "UTC"}).encode()
    head = (
        f"POST /task/{uuid.uuid4()}/schedule HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n"
        f"Authorization: Bearer {target.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


async def slow_client(port: int, sent_at_once: bytes, trickled: bytes) -> Cut:
    """Send `sent_at_once`, then `trickled` a byte a second (none: stall); until the server
    closes the connection, and what it answered."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def trickle() -> None:
        writer.write(sent_at_once)
        for index in range(len(trickled)):
            await writer.drain()
            await asyncio.sleep(1)  # the client's pace, not a wait for the server
            writer.write(trickled[index : index + 1])

    sender = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(60):
            answer = await reader.read()  # to EOF: the server closed the connection
        return Cut(time.monotonic() - started, answer)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


async def probe(target: Target, until: asyncio.Event) -> list[float]:
    """Requests of a normal client while the slow ones hang on: how long each took."""
    took = []
    async with httpx.AsyncClient(
        base_url=target.server.base_url, headers=bearer(target.token), timeout=10
    ) as client:
        while not until.is_set():
            started = time.monotonic()
            whoami = await client.get("/whoami")
            schedule = await client.post(
                f"/task/{uuid.uuid4()}/schedule", json={"cron_expression": "@daily"}
            )
            took.append(time.monotonic() - started)
            assert (whoami.status_code, schedule.status_code) == (200, 404)
            await asyncio.sleep(0.2)  # a pace, not a wait for the server
    return took


async def test_slow_and_stalled_clients_are_cut_off_and_others_are_served(
    target: Target,
) -> None:
    baseline = target.open_descriptors()
    upload_head, upload_body = upload_request(target)
    schedule_head, schedule_body = schedule_request(target)
    done = asyncio.Event()
    prober = asyncio.create_task(probe(target, done))
    kinds = {
        "headers a byte a second": (b"", upload_head + upload_body),
        "a form body a byte a second": (upload_head, upload_body),
        "a form body that stops": (upload_head + upload_body[:100], b""),
        "a JSON body that stops": (schedule_head + schedule_body[:10], b""),
    }
    everyone = await asyncio.gather(
        *(slow_client(target.port, *parts) for parts in kinds.values() for _ in range(SLOW_CLIENTS))
    )
    cuts = {
        kind: everyone[index * SLOW_CLIENTS : (index + 1) * SLOW_CLIENTS]
        for index, kind in enumerate(kinds)
    }
    done.set()
    took = await prober

    for cut in cuts["headers a byte a second"]:
        assert cut.answer == b""  # hypercorn closes: no request to answer yet
        assert KEEP_ALIVE_SECONDS - 0.5 < cut.seconds < KEEP_ALIVE_SECONDS + SLACK, cut
    for kind in ("a form body a byte a second", "a form body that stops", "a JSON body that stops"):
        for cut in cuts[kind]:
            assert cut.answer.startswith(b"HTTP/1.1 408 "), (kind, cut.answer[:200])
            assert b'"code":"request_timeout"' in cut.answer, cut.answer
            assert BODY_SECONDS - 0.5 < cut.seconds < BODY_SECONDS + SLACK, (kind, cut)
    assert len(took) >= 10 and max(took) < 1.0, took
    # Every cut connection is closed on the server's side too.
    wait_for(lambda: target.open_descriptors() <= baseline + 2, timeout=10, what="sockets")


def test_the_production_body_timeout_is_bounded(tmp_path: Path) -> None:
    app = create_app(load_settings(data_dir=tmp_path, secret_key="slow " * 8))
    assert 0 < app.config["BODY_TIMEOUT"] <= 60


# many big uploads at once ---------------------------------------------------------------------


async def upload(client: httpx.AsyncClient, size: int) -> int | str:
    """A script of `size` bytes with an invalid timeout: refused after its body was read."""
    files = {"file": ("big.py", b"#" * size)}
    try:
        response = await client.post("/task/py", files=files, data={"timeout_seconds": "soon"})
    except httpx.TransportError as error:
        return type(error).__name__
    return response.status_code


async def burst(client: httpx.AsyncClient, count: int) -> Counter[int | str]:
    limit = MIB  # TASKDASH_MAX_SCRIPT_BYTES's default
    return Counter(
        await asyncio.gather(
            *(upload(client, limit) for _ in range(count)),
            *(upload(client, 3 * limit) for _ in range(count)),
        )
    )


async def test_a_hundred_maximum_uploads_at_once_leave_memory_bounded(budgeted: Target) -> None:
    target = budgeted
    request_limit = 2 * MIB + 64 * 1024  # MAX_CONTENT_LENGTH for the default script limit
    # Pooled: a 413 says `Connection: close`, so no upload is sent into a closed connection.
    limits = httpx.Limits(max_connections=2 * UPLOADS + 10)
    async with httpx.AsyncClient(
        base_url=target.server.base_url, headers=bearer(target.token), timeout=60, limits=limits
    ) as client:
        await burst(client, 20)  # what the first requests make once: pools, caches
        before = target.memory()
        target.reset_peak()
        maximum = await asyncio.gather(*(upload(client, MIB) for _ in range(UPLOADS)))
        peak = target.memory("VmHWM")
        answers = await burst(client, UPLOADS)
        after = wait_for(
            lambda: (now := target.memory()) < before + RETAINED and now,
            timeout=10,
            what="the server's memory to come back down",
        )
        again = await burst(client, UPLOADS)
        settled = wait_for(
            lambda: (now := target.memory()) < before + RETAINED and now,
            timeout=10,
            what="the server's memory to come back down again",
        )
    print(
        f"RSS before {before / MIB:.1f} MiB, peak of {UPLOADS} maximum uploads "
        f"+{(peak - before) / MIB:.1f}, after {after / MIB:.1f}, after two bursts of "
        f"{2 * UPLOADS} {settled / MIB:.1f}; {answers}"
    )
    assert Counter(maximum)[400] == UPLOADS
    # Read to the end and refused (400), or refused from their Content-Length (413; a client
    # still sending when the answer comes may see the connection reset instead).
    for got in (answers, again):
        assert got[400] == UPLOADS, got
        assert got[413] + sum(n for key, n in got.items() if isinstance(key, str)) == UPLOADS, got
    # At most BUFFER_MB of bodies are admitted at once; each of them is held whole by Quart
    # and partly again by the form parser (so up to about 3x); a waiting upload holds at most
    # two 64 KiB reads in hypercorn's queue. Before the budget and the short queue, the same
    # burst took 105 MiB.
    bound = 3 * BUFFER_MB * MIB + UPLOADS * 256 * 1024 + 16 * MIB
    assert peak - before < bound, f"peak +{(peak - before) / MIB:.0f} MiB"
    assert peak - before < UPLOADS * request_limit / 2
    assert settled < after + 16 * MIB, "a second burst left more behind: a leak"
