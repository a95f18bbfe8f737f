"""Pure: how a container's end becomes a run's status."""

from __future__ import annotations

import pytest

from taskdash.core.models import RunStatus
from taskdash.engine.outcome import exit_reason, final_status


@pytest.mark.parametrize(
    ("code", "stop", "timeout", "status"),
    [
        (0, False, False, RunStatus.SUCCEEDED),
        (1, False, False, RunStatus.FAILED),
        (137, True, False, RunStatus.STOPPED),
        (0, True, False, RunStatus.STOPPED),
        (137, False, True, RunStatus.TIMED_OUT),
        (137, True, True, RunStatus.TIMED_OUT),
    ],
)
def test_final_status(code: int, stop: bool, timeout: bool, status: RunStatus) -> None:
    assert final_status(code, stop_requested=stop, timed_out=timeout) is status


def test_exit_reason_names_the_oom_kill() -> None:
    assert exit_reason({"State": {"OOMKilled": True}}, 64) == "killed: out of memory (limit 64 MiB)"
    assert exit_reason({"State": {"OOMKilled": False}}, 64) is None
    assert exit_reason(None, 64) is None
