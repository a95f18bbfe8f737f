"""Pure: parsing submitted form values."""

from __future__ import annotations

import pytest

from taskdash.core.errors import BadRequest, PayloadTooLarge
from taskdash.web.forms import parse_bool, parse_env, parse_number, parse_page, read_script


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("", True), ("true", True), ("1", True), ("off", False), ("False", False)],
)
def test_parse_bool(value: str | None, expected: bool) -> None:
    assert parse_bool(value, "upload", default=True) is expected


@pytest.mark.parametrize("value", ["maybe", "2", "yes please"])
def test_parse_bool_rejects(value: str) -> None:
    with pytest.raises(BadRequest, match="'upload' must be true or false"):
        parse_bool(value, "upload", default=True)


def test_parse_number_and_page() -> None:
    assert parse_number("2.5", "cpus", float, 0.1, 4.0) == 2.5
    assert parse_number(" ", "cpus", float, 0.1, 4.0) is None
    with pytest.raises(BadRequest, match="between"):
        parse_number("9", "cpus", float, 0.1, 4.0)
    assert parse_page({}, 50) == (50, 0)
    assert parse_page({"limit": "5", "offset": "10"}, 50) == (5, 10)


def test_parse_env() -> None:
    assert parse_env('{"A": "x", "B": 2}') == {"A": "x", "B": "2"}
    assert parse_env(None) == {}
    with pytest.raises(BadRequest, match="must be a string"):
        parse_env('{"A": {"nested": 1}}')


class FakeUpload:
    def __init__(self, filename: str | None, content: bytes) -> None:
        self.filename = filename
        self._content = content

    def read(self) -> bytes:
        return self._content


def test_read_script_prefers_the_file_then_the_text_field() -> None:
    assert read_script({}, {"file": FakeUpload("a.py", b"x")}, 10) == (b"x", "a.py")
    assert read_script({"script": "y\r\n"}, {}, 10) == (b"y\n", "")
    with pytest.raises(PayloadTooLarge, match="limit is 3 bytes"):
        read_script({}, {"file": FakeUpload("a.py", b"four")}, 3)
