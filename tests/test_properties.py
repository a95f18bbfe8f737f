"""Properties over inputs nobody thought of (Hypothesis; pure and fast): upload names, cron
strings and zones, log lines on their way to a page, run ids on their way to a path."""

from __future__ import annotations

import codecs
import io
import itertools
import re
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from unittest import mock
from uuid import UUID

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from taskdash.core.errors import BadRequest, TaskdashError
from taskdash.core.models import ScriptType
from taskdash.engine.spec import JOB_DIR, script_archive, script_command, script_filename
from taskdash.logs import lines as lines_module
from taskdash.logs.ansi import ansi_to_html
from taskdash.logs.hub import LogHub
from taskdash.logs.lines import split_lines
from taskdash.logs.store import LogStore
from taskdash.scheduling.cron import known_zones, next_fire_times, parse_cron, parse_timezone
from taskdash.web.forms import MAX_FILENAME_CHARS, MAX_NAME_CHARS, parse_new_task, parse_uuid
from taskdash.web.sse import Badges, HtmlRenderer, JsonRenderer, sse_event

# Every character class Hypothesis has, NUL, surrogates' neighbours and controls included.
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=80)
NASTY = st.sampled_from(
    ["../", "..\\", "/", "\\", "\0", "\r", "\n", "\x1b", "\u202e", "\u200b", "é", "😀", "<", '"']
)
NAMES = st.one_of(
    ANY_TEXT,
    st.lists(st.one_of(NASTY, ANY_TEXT), max_size=8).map("".join),
    st.integers(250, 400).map(lambda n: "a" * n + ".py"),
)


@dataclass
class FakeUpload:
    filename: str | None
    data: bytes

    def read(self) -> bytes:
        return self.data


# upload names ---------------------------------------------------------------------------------


@given(filename=NAMES, kind=st.sampled_from(list(ScriptType)))
@example(filename="../../etc/passwd", kind=ScriptType.PYTHON)
@example(filename="/etc/cron.d/evil", kind=ScriptType.SHELL)
@example(filename="a\0b.py", kind=ScriptType.PYTHON)
@example(filename="x" * 300, kind=ScriptType.PYTHON)
@example(filename="C:\\Users\\me\\job.py", kind=ScriptType.PYTHON)
def test_an_upload_name_is_only_a_label(filename: str, kind: ScriptType) -> None:
    upload = FakeUpload(filename, b"print('hi')\n")
    try:
        new = parse_new_task(kind, {}, {"file": upload}, 1024)
    except BadRequest:
        assert not filename, "only a missing file (no name at all) is refused"
        return
    # Kept as a label: no directory, no control or format character, fits its column.
    assert "/" not in new.filename and "\\" not in new.filename
    assert new.filename not in (".", "..")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e]", new.filename)
    assert len(new.filename) <= MAX_FILENAME_CHARS
    assert 0 < len(new.name) <= MAX_NAME_CHARS
    assert new.script == upload.data
    # No container path derives from it: the script is always /job/main.py or /job/script.sh.
    member = script_filename(kind)
    with tarfile.open(fileobj=io.BytesIO(script_archive(kind, new.script))) as archive:
        assert archive.getnames() == [member]
    assert f"{JOB_DIR}/{member}" in script_command(kind, new.script)


@given(filename=NAMES, name=ANY_TEXT)
def test_a_given_name_wins_over_the_upload_name(filename: str, name: str) -> None:
    upload = FakeUpload(filename or "x.py", b"echo hi\n")
    try:
        new = parse_new_task(ScriptType.SHELL, {"name": name}, {"file": upload}, 1024)
    except BadRequest as refused:
        assert len(name.strip()) > MAX_NAME_CHARS, refused.message
        return
    assert new.name == (name.strip() or new.name)


# cron strings and time zones --------------------------------------------------------------


def cron_field(low: int, high: int, words: list[str]) -> st.SearchStrategy[str]:
    """One field as people write it, mostly within its range, sometimes just outside."""
    number = st.integers(low, high)
    near = st.integers(low - 1, high + 1)
    item = st.one_of(
        st.just("*"),
        number.map(str),
        st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.tuples(st.sampled_from(["*", f"{low}-{high}"]), st.integers(1, high + 1)).map(
            lambda rs: f"{rs[0]}/{rs[1]}"
        ),
        st.sampled_from(words) if words else number.map(str),
        near.map(str),
        st.sampled_from(["?", "L", "W", "5#2", "*/0", "1-", ",", "-1", "0x5", "٣"]),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


CRON_FIELDS = st.tuples(
    cron_field(0, 59, []),
    cron_field(0, 23, []),
    cron_field(1, 31, ["L"]),
    cron_field(1, 12, ["jan", "feb", "dec", "JAN-MAR"]),
    cron_field(0, 7, ["sun", "mon", "sat", "mon-fri", "fri-mon"]),
).map(" ".join)
CRON_TEXT = st.one_of(
    CRON_FIELDS,
    CRON_FIELDS.map(lambda text: f"  {text}\t"),
    CRON_FIELDS.map(lambda text: text.replace(" ", "\u3000", 1)),
    ANY_TEXT,
    st.sampled_from(["@daily", "@hourly", "@weekly", "@reboot", "@DAILY", "@", "@yearly x"]),
)
# Zones with odd transitions: half-hour DST, DST below standard time, skipped days, Ramadan.
ODD_ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Europe/Dublin",
    "Africa/Casablanca",
    "America/Santiago",
    "Pacific/Apia",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Antarctica/Troll",
]
ZONES = st.one_of(st.sampled_from(ODD_ZONES), st.sampled_from(sorted(known_zones())))
INSTANTS = st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC))


@given(text=CRON_TEXT)
@settings(max_examples=300)
def test_a_cron_string_parses_or_is_a_bad_request(text: str) -> None:
    try:
        spec = parse_cron(text)
    except BadRequest as refused:
        assert refused.code == "invalid_cron"
        return
    assert len(spec.fields.split(" ")) == 5


@given(name=st.one_of(ANY_TEXT, ZONES, ZONES.map(str.lower), ZONES.map(lambda z: f" {z}\0")))
def test_a_zone_name_parses_or_is_a_bad_request(name: str) -> None:
    try:
        zone = parse_timezone(name)
    except BadRequest as refused:
        assert refused.code == "invalid_timezone"
        return
    assert zone.key == name.strip()


@given(text=CRON_TEXT, zone=ZONES, after=INSTANTS)
@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@example(text="30 2 * * *", zone="Europe/Paris", after=datetime(2026, 3, 28, 23, tzinfo=UTC))
@example(text="*/15 * * * *", zone="Europe/Paris", after=datetime(2026, 10, 24, 23, tzinfo=UTC))
@example(text="0 * * * *", zone="Australia/Lord_Howe", after=datetime(2026, 4, 4, 14, tzinfo=UTC))
@example(text="0 0 29 2 *", zone="Pacific/Apia", after=datetime(2011, 12, 29, tzinfo=UTC))
def test_fire_times_are_in_the_future_and_strictly_increasing(
    text: str, zone: str, after: datetime
) -> None:
    try:
        spec = parse_cron(text)
    except BadRequest:
        return
    times = next_fire_times(spec, parse_timezone(zone), after, 5)
    assert times[0] > after
    assert all(earlier < later for earlier, later in itertools.pairwise(times))
    assert all(time.tzinfo is not None and time.utcoffset() == timedelta(0) for time in times)


# log lines: container bytes -> lines -> SSE events -> the page -----------------------------

LOG_PIECES = st.sampled_from(
    [
        "\x1b[31m",
        "\x1b[1;4;38;5;9m",
        "\x1b[0m",
        "\x1b]0;title\x07",
        "\x1b]8;;javascript:alert(1)\x1b\\link\x1b]8;;\x1b\\",
        "\x1b[2J",
        "\x9b31m",
        "<script>alert(1)</script>",
        '<div hx-get="/x" hx-trigger="load">',
        "<img src=x onerror=alert(1)>",
        '" onmouseover="alert(1)',
        "</span></div><div hx-post='/tasks'>",
        "&lt;",
        "\r",
        "\n",
        "\r\n",
        "\0",
        "\u2028",
        "\x85",
        "data: fake\n\nevent: end\n\n",
    ]
)
LOG_TEXT = st.lists(st.one_of(LOG_PIECES, ANY_TEXT), max_size=12).map("".join)
LOG_BYTES = st.one_of(st.binary(max_size=200), LOG_TEXT.map(lambda text: text.encode()))


def decoded_lines(chunks: list[bytes]) -> tuple[list[str], str]:
    """What the engine does with a container's output: incremental UTF-8, then lines."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines: list[str] = []
    pending = ""
    for chunk in [*chunks, b""]:
        done, pending = split_lines(pending, decoder.decode(chunk, final=not chunk))
        lines.extend(done)
    return lines, pending


@given(data=LOG_BYTES, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_output_becomes_the_same_lines_however_it_is_cut(data: bytes, cuts: list[int]) -> None:
    points = sorted({0, len(data), *(min(cut, len(data)) for cut in cuts)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    whole, rest = decoded_lines([data])
    assert decoded_lines(chunks) == (whole, rest)
    assert all("\n" not in line for line in whole)
    expected = data.decode("utf-8", "replace").split("\n")
    assert rest == expected[-1]
    assert whole == [line.removesuffix("\r") for line in expected[:-1]]


def cut_lines(text: str, chunk: int) -> tuple[list[str], str]:
    pending, out = "", []
    for start in range(0, len(text), chunk):
        done, pending = split_lines(pending, text[start : start + chunk])
        out.extend(done)
    return out, pending


@given(text=LOG_TEXT, size=st.integers(1, 6), chunk=st.integers(1, 9))
def test_an_overlong_line_is_cut_into_bounded_lines(text: str, size: int, chunk: int) -> None:
    with mock.patch.object(lines_module, "MAX_LINE_CHARS", size):
        out, pending = cut_lines(text, chunk)
    assert all(len(line) <= size for line in out)
    # A trailing CR is held back as the possible first half of a CRLF.
    assert len(pending.removesuffix("\r")) <= size


@given(text=LOG_TEXT, size=st.integers(1, 6), chunk=st.integers(1, 9))
@example(text="abc\r\n", size=3, chunk=4)
def test_a_cut_line_does_not_depend_on_how_output_arrived(text: str, size: int, chunk: int) -> None:
    with mock.patch.object(lines_module, "MAX_LINE_CHARS", size):
        assert cut_lines(text, chunk) == cut_lines(text, max(len(text), 1))


def parse_sse(stream: str) -> list[dict[str, str]]:
    """Events as a browser's EventSource reads them (any of CRLF, CR, LF ends a line)."""
    events, fields = [], dict[str, str]()
    for line in re.split(r"\r\n|\r|\n", stream):
        if line == "":
            if fields:
                events.append(fields)
            fields = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value
    assert not fields, "the stream ends inside an event"
    return events


@given(text=LOG_TEXT, number=st.integers(1, 10**9))
@example(text="a\r\n\r\nevent: end", number=1)
@example(text="\r\r\n\n", number=7)
def test_a_log_line_is_exactly_one_sse_event(text: str, number: int) -> None:
    stream = JsonRenderer().lines([(number, text)])
    assert stream.endswith("\n\n") and stream.count("\n\n") == 1
    assert "\r" not in stream
    [event] = parse_sse(stream)
    assert event == {"event": "line", "id": str(number), "data": re.sub(r"\r\n|\r", "\n", text)}


@given(event=st.sampled_from(["line", "status", "end", "run"]), data=LOG_TEXT)
def test_any_data_is_one_event(event: str, data: str) -> None:
    stream = sse_event(event, data)
    assert len(parse_sse(stream)) == 1 and stream.count("\n\n") == 1


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text, of a fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def elements_of(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser


def assert_inert(html: str) -> None:
    parsed = elements_of(html)
    for tag, attrs in parsed.tags:
        assert tag in ("div", "span"), (tag, html)
        for name, value in attrs:
            assert name in ("class", "id"), (name, html)
            assert not name.startswith(("hx-", "on", "sse-")), (name, html)
            assert value is not None and re.fullmatch(r"[A-Za-z0-9 _-]*", value), (value, html)
    assert "<script" not in html.lower()


@given(text=LOG_TEXT)
@example(text="\x1b[31m<script>alert(1)</script>\x1b[0m")
@example(text='<div hx-get="/x" hx-trigger="load" onclick="x()">')
def test_a_log_line_is_inert_in_the_page(text: str) -> None:
    html = ansi_to_html(text)
    assert_inert(html)
    assert {tag for tag, _ in elements_of(html).tags} <= {"span"}


@pytest.fixture(scope="module")
def renderer() -> HtmlRenderer:
    from quart import Quart

    return HtmlRenderer(Badges(Quart(__name__)))


@given(texts=st.lists(LOG_TEXT, min_size=1, max_size=5), first=st.integers(1, 10**6))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_dashboard_gets_a_burst_as_one_inert_event(
    renderer: HtmlRenderer, texts: list[str], first: int
) -> None:
    batch = [(first + index, text) for index, text in enumerate(texts)]
    stream = renderer.lines(batch)
    assert stream.count("\n\n") == 1 and "\r" not in stream
    [event] = parse_sse(stream)
    assert event["event"] == "line" and event["id"] == str(batch[-1][0])
    assert_inert(event["data"])
    rows = [attrs for tag, attrs in elements_of(event["data"]).tags if tag == "div"]
    assert rows == [[("class", "line"), ("id", f"L{number}")] for number, _ in batch]


# run ids on their way to a path ---------------------------------------------------------------


@pytest.fixture(scope="module")
def store() -> Iterator[LogStore]:
    with tempfile.TemporaryDirectory() as folder:
        yield LogStore(Path(folder) / "logs", 1024 * 1024, LogHub())


UUID_LIKE = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: "{" + u.hex.upper() + "}"),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.uuids().map(lambda u: f"../{u}"),
    st.uuids().map(lambda u: f"{u}/../../etc"),
    st.uuids().map(lambda u: f"{u}\0.log"),
    ANY_TEXT,
)


@given(text=UUID_LIKE)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_run_id_string_becomes_a_path_inside_the_logs_or_a_bad_request(
    store: LogStore, text: str
) -> None:
    try:
        run_id = parse_uuid(text, "run id")
    except TaskdashError as refused:
        assert refused.status == 400 and refused.code == "malformed_id"
        return
    path = store.path_for(run_id)
    assert path.parent == store.logs_dir
    assert path.resolve().parent == store.logs_dir.resolve()
    assert path.name == f"{UUID(str(run_id))}.log"
