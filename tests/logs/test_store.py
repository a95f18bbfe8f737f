"""Log files on disk: a log left by a crash loses only its half-written last line (also when
it is larger than one piece of the repair's reading), and a log another process writes is read
on from where the last read ended."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from taskdash.logs import store
from taskdash.logs.hub import LogHub
from taskdash.logs.store import LogStore, repair_log_file


def test_a_half_written_last_line_is_dropped_across_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "REPAIR_CHUNK_BYTES", 7)
    path = tmp_path / "run.log"
    whole = b"".join(f"line {n}\n".encode() for n in range(1, 101))
    path.write_bytes(whole + b"half a li")

    assert repair_log_file(path) == (100, len(whole))
    assert path.read_bytes() == whole


def test_a_log_with_no_complete_line_becomes_empty(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"no newline yet")

    assert repair_log_file(path) == (0, 0)
    assert path.read_bytes() == b""


def test_a_whole_log_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"a\nb\n")

    assert repair_log_file(path) == (2, 4)
    assert path.read_bytes() == b"a\nb\n"


def test_no_file_is_an_empty_log(tmp_path: Path) -> None:
    assert repair_log_file(tmp_path / "missing.log") == (0, 0)


def test_a_log_another_process_writes_is_read_on_from_where_the_last_read_ended(
    tmp_path: Path,
) -> None:
    logs = LogStore(tmp_path / "logs", 1 << 20, LogHub())
    run_id = uuid4()
    path = logs.path_for(run_id)
    path.write_bytes(b"one\ntwo\nthr")

    offset = logs.offset_after(run_id, 1)
    assert offset == 4
    lines, offset = logs.read_new(run_id, 1, offset)
    assert lines == [(2, "two")]  # the half-written third line waits
    with path.open("ab") as handle:
        handle.write(b"ee\nfour\n")
    lines, offset = logs.read_new(run_id, 2, offset)
    assert lines == [(3, "three"), (4, "four")]
    assert logs.read_new(run_id, 4, offset) == ([], offset)
    assert logs.offset_after(run_id, 10) == path.stat().st_size
