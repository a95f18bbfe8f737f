"""Every setting is documented in .env.example, and the README keeps its two commands."""

from __future__ import annotations

import re

from taskdash.core.config import Settings
from tests.support import REPO


def documented_variables() -> set[str]:
    text = (REPO / ".env.example").read_text()
    return set(re.findall(r"^(TASKDASH_[A-Z_]+)=", text, flags=re.MULTILINE))


def test_every_setting_is_in_env_example() -> None:
    settings = {f"TASKDASH_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented_variables() == set(), "document these in .env.example"
    assert documented_variables() - settings == set(), "these are documented but do not exist"


def test_env_example_defaults_load() -> None:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.startswith("TASKDASH_"):
            key, _, value = line.partition("=")
            if value:
                values[key.removeprefix("TASKDASH_").lower()] = value
    assert Settings(**values).python_image == "taskdash/python:bookworm"


def test_readme_shows_the_two_commands_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
