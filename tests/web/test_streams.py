"""SSE log streams over real HTTP, a real server and real containers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from quart import typing as quart_typing

from taskdash import create_app
from taskdash.core.config import load_settings
from taskdash.core.models import ScriptType, Task, Trigger
from taskdash.core.principal import ANONYMOUS
from taskdash.logs.hub import SUBSCRIBER_BUFFER
from taskdash.services import Services
from taskdash.web.sse import sse_event
from tests.support import LiveServer, create_task, logs, wait_for, wait_run

# Prints `count` numbered lines, one every `pause` seconds, after `delay` seconds.
PACED = (
    "import time\n"
    "time.sleep({delay})\n"
    "for i in range(1, {count} + 1):\n"
    "    print(f'line {{i}}', flush=True)\n"
    "    time.sleep({pause})\n"
)


FOREVER_TICKS = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.2)\n"


def paced(count: int, pause: float = 0.05, delay: float = 0.0) -> str:
    return PACED.format(count=count, pause=pause, delay=delay)


def expected_lines(count: int) -> list[tuple[int, str]]:
    return [(i, f"line {i}") for i in range(1, count + 1)]


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: int | None = None


@dataclass
class Stream:
    """What one connection received."""

    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    closed: bool = False  # by the server

    def lines(self) -> list[tuple[int, str]]:
        return [(e.id or 0, e.data) for e in self.events if e.event == "line"]

    def last_id(self) -> int:
        return max((e.id or 0 for e in self.events), default=0)

    def end(self) -> Event | None:
        return next((e for e in self.events if e.event == "end"), None)


def parse_field(event: Event, line: str) -> None:
    name, _, value = line.partition(":")
    value = value.removeprefix(" ")
    if name == "event":
        event.event = value
    elif name == "data":
        event.data = f"{event.data}\n{value}" if event.data else value
    elif name == "id":
        event.id = int(value)


async def read_stream(
    lines: AsyncIterator[str], stream: Stream, stop: Callable[[Stream], bool]
) -> None:
    """Parse SSE `lines` into `stream` until `stop(stream)` or the server closes.

    Call again with the same `lines` iterator to go on reading the same response.
    """
    event = Event()
    async for line in lines:
        if line.startswith(":"):
            stream.comments.append(line[1:].strip())
        elif line:
            parse_field(event, line)
            continue
        elif event != Event():
            stream.events.append(event)
            event = Event()
        if stop(stream):
            return
    stream.closed = True


async def follow(
    http: httpx.AsyncClient,
    path: str,
    *,
    after: int | None = None,
    stop: Callable[[Stream], bool] = lambda _s: False,
    deadline: float = 60.0,
    into: Stream | None = None,
) -> Stream:
    """One connection; `after` is sent as Last-Event-ID; `into` shows progress meanwhile."""
    headers = {"Last-Event-ID": str(after)} if after is not None else {}
    stream = into or Stream()
    async with asyncio.timeout(deadline), http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        await read_stream(response.aiter_lines(), stream, stop)
    return stream


async def follow_to_end(http: httpx.AsyncClient, path: str, deadline: float = 60.0) -> list[Stream]:
    """Reconnect with Last-Event-ID whenever the stream closes before `end`, as browsers do."""
    connections: list[Stream] = []
    after: int | None = None
    async with asyncio.timeout(deadline):
        while not connections or connections[-1].end() is None:
            connections.append(await follow(http, path, after=after, deadline=deadline))
            after = max(after or 0, connections[-1].last_id())
    return connections


def all_lines(connections: list[Stream]) -> list[tuple[int, str]]:
    return [line for stream in connections for line in stream.lines()]


def stream_path(task_id: str, run_id: str | None = None) -> str:
    return f"/task/{task_id}/logs/stream" + (f"?run_id={run_id}" if run_id else "")


def ui_path(task_id: str, run_id: str) -> str:
    return f"/ui/tasks/{task_id}/runs/{run_id}/stream"


def stored_count(client: httpx.Client, task_id: str) -> int:
    return len(logs(client, task_id).splitlines())


def async_client(server: LiveServer, **options: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=60, **options)  # type: ignore[arg-type]


@pytest.fixture()
async def in_process(
    docker_engine: None, tmp_path: Path
) -> AsyncIterator[tuple[quart_typing.TestAppProtocol, Services]]:
    """The app served in this process (to reach its services), with its own data dir. Its test
    client is no loopback socket, so anonymous access is allowed explicitly."""
    settings = load_settings(
        data_dir=tmp_path / "data", instance_id=f"test-{uuid.uuid4().hex}", allow_anonymous=True
    )
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app, app.extensions["taskdash"]


# pure -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("line", "hello", 3), "event: line\nid: 3\ndata: hello\n\n"),
        (("status", "{}", None), "event: status\ndata: {}\n\n"),
        (("line", "a\nb\r\nc\rd", 1), "event: line\nid: 1\ndata: a\ndata: b\ndata: c\ndata: d\n\n"),
        (("end", "", None), "event: end\ndata: \n\n"),
    ],
)
def test_sse_event_never_puts_a_line_break_in_data(
    args: tuple[str, str, int | None], text: str
) -> None:
    assert sse_event(*args) == text


# the API stream ---------------------------------------------------------------------------------


async def test_replays_the_stored_log_then_follows_without_gap_or_duplicate(
    server: LiveServer, client: httpx.Client
) -> None:
    created = create_task(client, paced(40, pause=0.05, delay=0.5))
    task_id = created["task_id"]
    wait_for(lambda: stored_count(client, task_id) >= 5, what="some stored lines")
    async with async_client(server) as http:
        stream = await follow(http, stream_path(task_id))
    assert stored_count(client, task_id) == 40
    assert stream.closed
    assert stream.events[0].event == "status"
    assert json.loads(stream.events[0].data) == {"run_id": created["run_id"], "status": "running"}
    assert stream.lines() == expected_lines(40)
    assert stream.events[-1].event == "end"
    assert json.loads(stream.events[-1].data) == {
        "run_id": created["run_id"],
        "status": "succeeded",
        "exit_code": 0,
    }


async def test_reconnect_with_last_event_id_resumes_without_duplicates(
    server: LiveServer, client: httpx.Client
) -> None:
    created = create_task(client, paced(30, pause=0.05))
    path = stream_path(created["task_id"])
    async with async_client(server) as http:
        first = await follow(http, path, stop=lambda s: s.last_id() >= 10)
        assert not first.closed
        second = await follow(http, path, after=first.last_id())
    assert first.lines() == expected_lines(first.last_id())
    assert second.lines()[0][0] == first.last_id() + 1
    assert first.lines() + second.lines() == expected_lines(30)
    end = second.end()
    assert end is not None and json.loads(end.data)["status"] == "succeeded"


async def test_a_finished_run_replays_and_ends_at_once(
    server: LiveServer, client: httpx.Client
) -> None:
    created = create_task(client, "for i in range(1, 51):\n    print(f'line {i}')\n")
    wait_run(client, created["task_id"], created["run_id"])
    started = time.monotonic()
    async with async_client(server) as http:
        stream = await follow(http, stream_path(created["task_id"]), deadline=10)
        resumed = await follow(http, stream_path(created["task_id"]), after=45, deadline=10)
    assert time.monotonic() - started < 5
    assert [e.event for e in stream.events] == ["line"] * 50 + ["end"]
    assert stream.lines() == expected_lines(50)
    assert resumed.lines() == expected_lines(50)[45:]
    assert stream.closed and resumed.closed


async def test_a_failing_run_ends_with_its_status_and_exit_code(
    server: LiveServer, client: httpx.Client
) -> None:
    created = create_task(client, "echo bye\nexit 7\n", kind="sh")
    async with async_client(server) as http:
        stream = await follow(http, stream_path(created["task_id"]))
    end = stream.end()
    assert end is not None
    assert json.loads(end.data) == {"run_id": created["run_id"], "status": "failed", "exit_code": 7}
    assert stream.lines() == [(1, "bye")]


async def test_run_id_selects_an_older_run(server: LiveServer, client: httpx.Client) -> None:
    created = create_task(client, "import uuid\nprint(uuid.uuid4())\n")
    task_id, first = created["task_id"], created["run_id"]
    wait_run(client, task_id, first)
    async with async_client(server) as http:
        again = await http.put(f"/task/{task_id}")
        assert again.status_code == 202, again.text
        second = again.json()["run_id"]
        wait_run(client, task_id, second)
        old = await follow(http, stream_path(task_id, first))
        latest = await follow(http, stream_path(task_id))
    assert [text for _, text in old.lines()] == logs(client, task_id, first).splitlines()
    assert [text for _, text in latest.lines()] == logs(client, task_id, second).splitlines()
    assert old.lines() != latest.lines()
    for stream, run_id in ((old, first), (latest, second)):
        end = stream.end()
        assert end is not None and json.loads(end.data)["run_id"] == run_id


async def test_keep_alives_while_a_run_is_quiet_then_end_when_it_is_stopped(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(sse_keepalive_seconds="0.2")
    with live.client() as client:
        created = create_task(client, "echo start\nsleep 60\n", kind="sh")
        task_id = created["task_id"]
        wait_for(lambda: stored_count(client, task_id) == 1, what="the first line")
    async with (
        async_client(live) as http,
        http.stream("GET", stream_path(task_id)) as response,
        asyncio.timeout(30),
    ):
        stream, lines = Stream(), response.aiter_lines()
        await read_stream(lines, stream, lambda s: "keep-alive" in s.comments)
        assert stream.lines() == [(1, "start")]
        stopped = await http.post(f"/task/{task_id}/stop")
        assert stopped.status_code == 200, stopped.text
        await read_stream(lines, stream, lambda _s: False)
    assert [e.event for e in stream.events] == ["status", "line", "end"]
    end = stream.end()
    assert end is not None and json.loads(end.data)["status"] == "stopped"


async def test_with_no_run_yet_the_stream_waits_for_the_next_run(
    in_process: tuple[quart_typing.TestAppProtocol, Services],
) -> None:
    # The API always starts a first run, so a task without one is made in-process.
    test_app, services = in_process
    task = await Task.create(name="later", script_type=ScriptType.SHELL, script=b"echo later\n")
    path = stream_path(str(task.id))
    async with test_app.test_client().request(path) as connection, asyncio.timeout(60):
        await connection.send_complete()
        body = await connection.receive()
        assert cast(Any, connection).status_code == 200
        assert b"no run yet" in body
        run = await services.runs.queue(task, Trigger.API, ANONYMOUS)
        while b"event: end" not in body:
            body += await connection.receive()
    stream = Stream()
    await read_stream(iterate(body.decode().splitlines()), stream, lambda _s: False)
    assert stream.lines() == [(1, "later")]
    end = stream.end()
    assert end is not None
    assert json.loads(end.data) == {"run_id": str(run.id), "status": "succeeded", "exit_code": 0}


# many followers, slow followers -----------------------------------------------------------------


async def test_two_hundred_followers_each_see_every_line(
    server: LiveServer, client: httpx.Client
) -> None:
    created = create_task(client, paced(40, pause=0.05, delay=1.0))
    path = stream_path(created["task_id"])
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with async_client(server, limits=limits) as http:
        results = await asyncio.gather(
            *(follow_to_end(http, path, deadline=90) for _ in range(200))
        )
    for connections in results:
        assert all_lines(connections) == expected_lines(40)
        end = connections[-1].end()
        assert end is not None and json.loads(end.data)["status"] == "succeeded"


# ~8 MB of output in bursts: far more than a stalled reader's socket buffers plus its queue.
FLOOD = (
    "import sys, time\n"
    "pad = 'x' * 1000\n"
    "for i in range(1, 8001):\n"
    "    print(f'line {i} {pad}')\n"
    "    if i % 500 == 0:\n"
    "        sys.stdout.flush()\n"
    "        time.sleep(0.02)\n"
)


def stalled_request(server: LiveServer, path: str) -> socket.socket:
    """A GET whose reader never reads, with a tiny receive window: the server stalls at once.

    HTTP/1.0, so the body is the raw event stream up to the close (no chunked framing).
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def read_until_closed(sock: socket.socket, deadline: float) -> str:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.settimeout(deadline)
    chunks = []
    while data := sock.recv(1 << 20):
        chunks.append(data)
    sock.close()
    head, _, body = b"".join(chunks).decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head
    return body


async def iterate(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_a_stalled_follower_neither_blocks_the_others_nor_the_run(
    server: LiveServer, client: httpx.Client
) -> None:
    created = create_task(client, "import time\ntime.sleep(1)\n" + FLOOD)
    task_id = created["task_id"]
    path = stream_path(task_id)
    stalled = stalled_request(server, path)
    async with async_client(server) as http:
        connections = await follow_to_end(http, path, deadline=120)
    run = wait_run(client, task_id, created["run_id"], timeout=60)
    assert run["status"] == "succeeded"
    assert [n for n, _ in all_lines(connections)] == list(range(1, 8001))
    # Now read what the stalled one got: its buffered backlog, then a close without `end`.
    body = await asyncio.to_thread(read_until_closed, stalled, 60)
    dropped = Stream()
    await read_stream(iterate(body.splitlines()), dropped, lambda _s: False)
    assert dropped.end() is None
    assert any("dropped" in comment for comment in dropped.comments)
    assert 0 < dropped.last_id() < 8000
    assert [n for n, _ in dropped.lines()] == list(range(1, dropped.last_id() + 1))
    async with async_client(server) as http:
        resumed = await follow(http, path, after=dropped.last_id())
    assert [n for n, _ in dropped.lines() + resumed.lines()] == list(range(1, 8001))
    assert resumed.end() is not None


# errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"/task/{uuid.uuid4()}/logs/stream", 404, "task_not_found"),
        ("/task/not-a-uuid/logs/stream", 400, "malformed_id"),
        (f"/ui/tasks/{uuid.uuid4()}/runs/{uuid.uuid4()}/stream", 404, "task_not_found"),
        (f"/ui/tasks/nope/runs/{uuid.uuid4()}/stream", 400, "malformed_id"),
    ],
)
def test_unknown_or_malformed_task_ids(
    client: httpx.Client, path: str, status: int, code: str
) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["status"] == status


def test_unknown_or_malformed_run_ids_and_resume_points(client: httpx.Client) -> None:
    created = create_task(client, "echo hi\n", kind="sh")
    task_id = created["task_id"]
    cases = [
        (f"/task/{task_id}/logs/stream?run_id={uuid.uuid4()}", {}, 404, "run_not_found"),
        (f"/task/{task_id}/logs/stream?run_id=zzz", {}, 400, "malformed_id"),
        (f"/ui/tasks/{task_id}/runs/{uuid.uuid4()}/stream", {}, 404, "run_not_found"),
        (f"/ui/tasks/{task_id}/runs/x/stream", {}, 400, "malformed_id"),
        (f"/task/{task_id}/logs/stream", {"Last-Event-ID": "abc"}, 400, "bad_request"),
        (f"/task/{task_id}/logs/stream?after=-1", {}, 400, "bad_request"),
    ]
    for path, headers, status, code in cases:
        response = client.get(path, headers=headers)
        assert response.status_code == status, path
        assert response.json()["error"]["code"] == code, path


# the dashboard streams --------------------------------------------------------------------------


async def test_dashboard_stream_sends_escaped_html_lines_and_badges(
    server: LiveServer, client: httpx.Client
) -> None:
    script = "echo '<script>alert(1)</script>'\nprintf '\\033[1;31mred\\033[0m & done\\n'\n"
    created = create_task(client, script, kind="sh")
    path = ui_path(created["task_id"], created["run_id"])
    async with async_client(server) as http:
        stream = await follow(http, path)
        resumed = await follow(http, f"{path}?after=1")
    # The dashboard gets a burst of lines as one event whose id is its last line.
    html = "".join(text for _, text in stream.lines())
    assert stream.lines()[-1][0] == 2
    assert html.startswith(
        '<div class="line" id="L1"><span class="ln">1</span><span class="tx">'
        "&lt;script&gt;alert(1)&lt;/script&gt;</span></div>"
    )
    assert '<div class="line" id="L2"><span class="ln">2</span>' in html
    assert '<span class="ansi-bold ansi-fg-31">red</span> &amp; done' in html
    assert "<script>" not in html
    end = stream.end()
    assert end is not None and "succeeded" in end.data
    [(number, again)] = resumed.lines()
    assert number == 2 and 'id="L1"' not in again and 'id="L2"' in again


async def test_dashboard_stream_sends_status_badges_while_running(
    server: LiveServer, client: httpx.Client
) -> None:
    created = create_task(client, paced(5, pause=0.1, delay=0.5))
    async with async_client(server) as http:
        stream = await follow(http, ui_path(created["task_id"], created["run_id"]))
    kinds = [e.event for e in stream.events]
    assert kinds[0] == "status" and kinds[-1] == "end"
    assert "running" in stream.events[0].data or "queued" in stream.events[0].data
    assert [n for n, _ in stream.lines()] == [1, 2, 3, 4, 5]


async def test_task_list_feed_sends_each_status_change_as_a_task_event(
    server: LiveServer, client: httpx.Client
) -> None:
    async with async_client(server) as http, http.stream("GET", "/ui/events") as response:
        assert response.status_code == 200
        feed, lines = Stream(), response.aiter_lines()
        async with asyncio.timeout(30):
            await read_stream(lines, feed, lambda s: bool(s.comments))
            created = create_task(client, "echo hi\n", kind="sh")
            name = f"task-{created['task_id']}"

            def finished(stream: Stream) -> bool:
                return any(e.event == name and "succeeded" in e.data for e in stream.events)

            await read_stream(lines, feed, finished)
    mine = [e.data for e in feed.events if e.event == name]
    assert any("running" in data for data in mine)
    assert "succeeded" in mine[-1]


def task_view_path(task_id: str, run_id: str | None = None, after: int = 0) -> str:
    query = f"?run_id={run_id}&after={after}" if run_id else ""
    return f"/ui/tasks/{task_id}/stream{query}"


async def test_task_page_stream_follows_the_shown_run_then_announces_the_next_one(
    server: LiveServer, client: httpx.Client
) -> None:
    created = create_task(client, paced(3, pause=0.1, delay=0.3))
    task_id, first = created["task_id"], created["run_id"]
    async with (
        async_client(server) as http,
        http.stream("GET", task_view_path(task_id, first, after=1)) as response,
    ):
        assert response.status_code == 200
        stream, lines = Stream(), response.aiter_lines()
        async with asyncio.timeout(60):
            await read_stream(lines, stream, lambda s: s.end() is not None)
            # The run ended; the stream stays open and waits for the task's next run.
            second = (await http.put(f"/task/{task_id}")).json()["run_id"]
            await read_stream(lines, stream, lambda s: s.events[-1].event == "run")
    assert [n for n, _ in stream.lines()] == [2, 3]  # after=1: only what the page lacks
    assert stream.events[-1].data == second
    assert [e.event for e in stream.events][-2:] == ["end", "run"]
    wait_run(client, task_id, second)


async def test_task_page_stream_announces_a_run_started_before_it_connected(
    server: LiveServer, client: httpx.Client
) -> None:
    created = create_task(client, "echo one\n", kind="sh")
    task_id, first = created["task_id"], created["run_id"]
    wait_run(client, task_id, first)
    async with async_client(server) as http:
        second = (await http.put(f"/task/{task_id}")).json()["run_id"]
        # The page still shows the first run: it learns of the second at once (after the
        # first's `end`, which a page rendered while that run was live needs).
        stream = await follow(
            http,
            task_view_path(task_id, first, after=1),
            stop=lambda s: any(e.event == "run" for e in s.events),
        )
        # A page showing the latest run, finished: its end, and nothing else yet.
        wait_run(client, task_id, second)
        latest = await follow(
            http,
            task_view_path(task_id, second, after=1),
            stop=lambda s: s.end() is not None,
        )
    assert [e.event for e in stream.events] == ["end", "run"]
    assert stream.events[-1].data == second
    assert [e.event for e in latest.events] == ["end"]


def test_task_page_stream_refuses_a_run_of_another_task(client: httpx.Client) -> None:
    one = create_task(client, "echo one\n", kind="sh")
    other = create_task(client, "echo other\n", kind="sh")
    response = client.get(task_view_path(one["task_id"], other["run_id"]))
    assert response.status_code == 404
    assert other["run_id"] in response.json()["error"]["message"]
    response = client.get(f"/ui/tasks/{one['task_id']}/stream?run_id=nope")
    assert response.status_code == 400


async def test_task_list_feed_sends_only_latest_runs_and_asks_for_a_refresh_after_a_burst(
    in_process: tuple[quart_typing.TestAppProtocol, Services],
) -> None:
    test_app, services = in_process
    hub = services.hub
    task = await Task.create(name="busy", script_type=ScriptType.SHELL, script=b"true\n")
    older, latest = uuid.uuid4(), uuid.uuid4()
    await Task.filter(id=task.id).update(last_run_id=latest)
    async with test_app.test_client().request("/ui/events") as connection, asyncio.timeout(30):
        await connection.send_complete()
        body = await connection.receive()
        assert b": connected" in body
        hub.publish_status(older, task.id, "succeeded")  # an older run: not the badge
        hub.publish_status(latest, task.id, "running")
        while b"running" not in body:
            body += await connection.receive()
        # A burst larger than a follower's buffer, as 10,000 scheduled runs make.
        for _ in range(SUBSCRIBER_BUFFER + 100):
            hub.publish_status(older, task.id, "queued")
        hub.publish_status(latest, task.id, "failed")  # lost in the burst
        while b"event: refresh" not in body:
            body += await connection.receive()
        # Subscribed again: the next change comes through.
        hub.publish_status(latest, task.id, "succeeded")
        while b"succeeded" not in body:
            body += await connection.receive()
        await connection.disconnect()  # the feed never ends by itself
    stream = Stream()
    await read_stream(iterate(body.decode().splitlines()), stream, lambda _s: False)
    badges = [(e.event, e.data) for e in stream.events]
    name = f"task-{task.id}"
    assert [event for event, _ in badges] == [name, "refresh", name]
    assert "running" in badges[0][1] and "succeeded" in badges[2][1]


async def test_a_stop_ends_open_streams_first_and_the_server_exits_cleanly(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server()
    with live.client() as sync:
        created = create_task(sync, FOREVER_TICKS)
        wait_for(lambda: stored_count(sync, created["task_id"]) >= 2, what="the run to print")
    task_id, run_id = created["task_id"], created["run_id"]
    streams = [Stream(), Stream(), Stream()]
    paths = [stream_path(task_id), task_view_path(task_id, run_id), "/ui/events"]
    async with async_client(live) as http, asyncio.timeout(60):
        following = [
            asyncio.create_task(follow(http, path, into=stream))
            for path, stream in zip(paths, streams, strict=True)
        ]
        for _ in range(1200):  # connected, and the run has printed (the timeout bounds it)
            if streams[0].lines() and streams[1].lines() and streams[2].comments:
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(live.stop)  # SIGTERM, then wait for the process to exit
        await asyncio.gather(*following)
    assert live.process is not None and live.process.returncode == 0
    for stream in streams:
        assert stream.closed  # ended by the server, not cut by a timeout
    for stream in streams[:2]:
        assert any("the server is stopping" in comment for comment in stream.comments)
        assert stream.end() is None  # the run goes on; a browser resumes after the restart
    assert "Traceback" not in live.log_path.read_text()
