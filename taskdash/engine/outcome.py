"""Pure: how a container's end becomes a run's final status and reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskdash.core.models import RunStatus

# Exit codes of a process ended by SIGKILL or SIGTERM.
SIGNALS = {128 + 9: "SIGKILL", 128 + 15: "SIGTERM"}
LIVE_RESTORE_HINT = "an engine with live-restore keeps runs going through its restarts"
STOPPED_WITH_ENGINE = (
    "the Docker engine stopped while this run was running, and its container ended with it "
    f"({{signal}}, exit code {{exit_code}}); run the task again ({LIVE_RESTORE_HINT})"
)
SIGNALLED = (
    "ended by {signal} (exit code {exit_code}), which taskdash did not send: from the script "
    f"itself, `docker stop`, or the Docker engine stopping ({LIVE_RESTORE_HINT})"
)


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


def engine_time(value: object) -> datetime | None:
    """A time in inspect data (RFC 3339 with nanoseconds); None for the engine's zero time."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(value)


def container_started(info: dict[str, Any] | None) -> datetime | None:
    return engine_time(((info or {}).get("State") or {}).get("StartedAt"))


def container_finished(info: dict[str, Any] | None) -> datetime | None:
    state = (info or {}).get("State") or {}
    return None if state.get("Running") else engine_time(state.get("FinishedAt"))


def is_running(info: dict[str, Any] | None) -> bool:
    return bool(((info or {}).get("State") or {}).get("Running"))


def ran_seconds(info: dict[str, Any] | None) -> float | None:
    """How long the container ran, on the engine's own clock; None while unknown."""
    start, end = container_started(info), container_finished(info)
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def run_outcome(
    exit_code: int,
    info: dict[str, Any] | None,
    *,
    timeout_seconds: float,
    memory_mb: int,
    stop_requested: bool,
    deadline_passed: bool,
    ended_while_engine_away: bool,
) -> tuple[RunStatus, str | None]:
    """The final status and reason of a run whose container ended with `exit_code`.

    `deadline_passed`: the run's deadline came before its end was seen; it timed out only if the
    container really ran that long (it may have ended in time while nobody watched).
    `ended_while_engine_away`: the container was found ended after the engine came back.

    A SIGTERM or SIGKILL that taskdash did not send is said: an engine stopping without
    live-restore stops its containers, and whether the run sees the engine go first or its
    container end first is a matter of timing, so both read the same (`failed`, the exit code,
    the signal and the engine in the reason).
    """
    ran = ran_seconds(info)
    if deadline_passed and (ran is None or ran >= timeout_seconds):
        return RunStatus.TIMED_OUT, f"timed out after {timeout_seconds:g} s"
    status = final_status(exit_code, stop_requested=stop_requested, timed_out=False)
    reason = exit_reason(info, memory_mb)
    signal = SIGNALS.get(exit_code)
    if reason is None and signal is not None and not stop_requested:
        words = STOPPED_WITH_ENGINE if ended_while_engine_away else SIGNALLED
        reason = words.format(signal=signal, exit_code=exit_code)
    return status, reason
