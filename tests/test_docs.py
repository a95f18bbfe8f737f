"""Every setting is documented in .env.example, and the README keeps its two commands."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from taskdash.core.config import Settings
from tests.support import REPO


def documented_variables() -> set[str]:
    text = (REPO / ".env.example").read_text()
    return set(re.findall(r"^(TASKDASH_[A-Z_]+)=", text, flags=re.MULTILINE))


def test_every_setting_is_in_env_example() -> None:
    settings = {f"TASKDASH_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented_variables() == set(), "document these in .env.example"
    assert documented_variables() - settings == set(), "these are documented but do not exist"


def documented_defaults() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("TASKDASH_") and value:
            values[key.removeprefix("TASKDASH_").lower()] = value
    return values


def test_every_value_in_env_example_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("TASKDASH_"):
            monkeypatch.delenv(name)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert documented_defaults(), "no documented values found"
    for name, text in documented_defaults().items():
        given: dict[str, Any] = {name: text}
        documented = Settings(_env_file=None, **given)  # type: ignore[call-arg]
        assert getattr(documented, name) == getattr(defaults, name), (
            f".env.example says TASKDASH_{name.upper()}={text}, "
            f"but the default is {getattr(defaults, name)!r}"
        )


def test_readme_shows_the_two_commands_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
