"""Pure: cutting output into lines."""

from __future__ import annotations

import pytest

from taskdash.logs.lines import MAX_LINE_CHARS, split_lines


@pytest.mark.parametrize(
    ("pending", "chunk", "lines", "rest"),
    [
        ("", "a\nb\n", ["a", "b"], ""),
        ("", "a\nb", ["a"], "b"),
        ("par", "tial\n", ["partial"], ""),
        ("", "crlf\r\n", ["crlf"], ""),
        ("", "\n\n", ["", ""], ""),
    ],
)
def test_split_lines(pending: str, chunk: str, lines: list[str], rest: str) -> None:
    assert split_lines(pending, chunk) == (lines, rest)


def test_split_lines_bounds_an_endless_line() -> None:
    lines, rest = split_lines("", "x" * (MAX_LINE_CHARS * 2 + 5))
    assert lines == ["x" * MAX_LINE_CHARS] * 2
    assert rest == "x" * 5
