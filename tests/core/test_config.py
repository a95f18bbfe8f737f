"""Settings: bad values fail at start with a message naming the variable."""

from __future__ import annotations

import pytest

from taskdash.core.config import ConfigError, load_settings
from taskdash.core.models import RunStatus


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"run_memory_mb": "lots"}, "TASKDASH_RUN_MEMORY_MB"),
        ({"max_concurrent_runs": "0"}, "TASKDASH_MAX_CONCURRENT_RUNS"),
        ({"pip_ca_bundle": "/nonexistent/ca.pem"}, "TASKDASH_PIP_CA_BUNDLE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**env)


def test_terminal_statuses() -> None:
    assert not RunStatus.QUEUED.is_terminal and not RunStatus.RUNNING.is_terminal
    assert all(s.is_terminal for s in RunStatus if s not in (RunStatus.QUEUED, RunStatus.RUNNING))
