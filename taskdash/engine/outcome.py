"""Pure: how a container's end becomes a run's final status and reason."""

from __future__ import annotations

from typing import Any

from taskdash.core.models import RunStatus


def final_status(exit_code: int, *, stop_requested: bool, timed_out: bool) -> RunStatus:
    if timed_out:
        return RunStatus.TIMED_OUT
    if stop_requested:
        return RunStatus.STOPPED
    return RunStatus.SUCCEEDED if exit_code == 0 else RunStatus.FAILED


def exit_reason(info: dict[str, Any] | None, memory_mb: int) -> str | None:
    """A human reason for an abnormal end that the exit code alone does not tell."""
    state = (info or {}).get("State") or {}
    if state.get("OOMKilled"):
        return f"killed: out of memory (limit {memory_mb} MiB)"
    return None
