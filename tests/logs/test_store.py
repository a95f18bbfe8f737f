"""A log left by a crash: the half-written last line goes, the rest is counted exactly, also
when the file is larger than one piece of the repair's reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskdash.logs import store
from taskdash.logs.store import repair_log_file


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
