"""A run silent for more than six minutes still has its last line stored and streamed.

The run starts with the first engine test (tests/engine/conftest.py, `long_silence`) and this
test runs last in the session (the conftest's hook moves it there; the name also keeps it last
among the engine tests), so the silence passes while the rest of the suite runs.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.engine.conftest import SILENCE_SECONDS, LongSilence
from tests.support import TERMINAL, get_run, logs, wait_for

pytestmark = pytest.mark.sqlite_only(
    reason="370 s of a silent container: it tests the engine and the stream, which do not "
    "change with the database, so one pass is enough"
)


def test_a_run_silent_for_six_minutes_has_its_last_line_stored_and_streamed(
    long_silence: LongSilence | None,
) -> None:
    assert long_silence is not None
    silence = long_silence
    left = SILENCE_SECONDS - (time.monotonic() - silence.started)
    with silence.server.client() as http:

        def finished() -> dict[str, Any]:
            run = get_run(http, silence.task_id, silence.run_id)
            return run if run["status"] in TERMINAL else {}

        run = wait_for(finished, timeout=max(left, 0) + 120, interval=1.0, what="the silent run")
        text = logs(http, silence.task_id)
    assert silence.follower.thread is not None
    silence.follower.thread.join(timeout=60)

    assert run["status"] == "succeeded", run
    assert run["duration_seconds"] >= SILENCE_SECONDS
    assert text.splitlines() == ["before the silence", "after the silence"]
    # One connection, open through the whole silence, got both lines and the end.
    assert silence.follower.failure is None, silence.follower.failure
    lines = [(number, data) for event, number, data in silence.follower.events if event == "line"]
    assert lines == [("1", "before the silence"), ("2", "after the silence")]
    assert silence.follower.events[-1][0] == "end"
    assert silence.follower.comments >= SILENCE_SECONDS // 30  # keep-alives kept it open
