"""Test-only fault points: `hit(name)` kills this process with SIGKILL when the environment
variable TASKDASH_FAILPOINT equals `name`, so a test can crash the server at one exact step of a
run's life and check what the next start makes of it (tests/engine/test_faults.py). With
`name:pause` it stops the process with SIGSTOP instead, once, so a test can change the world
under it (restart the Docker engine) and let it go on with SIGCONT.

Never set TASKDASH_FAILPOINT outside tests. It is not a setting: it is read once, at import, so
an unarmed `hit` costs one comparison. The points:

- `run.created`: the run's container is created, not started
- `build.running`: the requirements build's container is running
- `run.started`: the run's container started and its start is recorded
- `run.exited`: the run's container exited, before its output is drained and the run finished
"""

from __future__ import annotations

import os
import signal

ARMED, _, ACTION = os.environ.get("TASKDASH_FAILPOINT", "").partition(":")
# A pause happens once: the step may come again (a run prepared again after it).
_paused: list[str] = []


def hit(name: str) -> None:
    if name != ARMED:
        return
    if ACTION != "pause":
        os.kill(os.getpid(), signal.SIGKILL)
    elif not _paused:
        _paused.append(name)
        os.kill(os.getpid(), signal.SIGSTOP)
