"""What this process knows of a run it supervises; the database knows the rest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from uuid import UUID


@dataclass
class LiveRun:
    run_id: UUID
    task_id: UUID
    # A script streamed with upload=false: held only until its container has it.
    script: bytes | None = None
    # The container doing the run's work now (the requirements build, then the run itself).
    container_id: str | None = None
    stop_requested: bool = False
    job: asyncio.Task[None] | None = None
    # The task's secret env, decrypted for this run: given to the container, masked in logs.
    secrets: dict[str, str] = field(default_factory=dict)
