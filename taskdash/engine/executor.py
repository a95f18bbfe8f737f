"""What the Supervisor asks of whatever runs a run's container: a RunExecutor.

`TASKDASH_EXECUTOR` picks one: `docker` (DockerExecutor, below: a container on the engine
taskdash talks to) or `swarm` (engine/swarm.py: a replicated-job service on the swarm that
engine manages). A run's `ref` is what the executor hands back from `launch` and takes in every
other call: the container's id, or the service's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from taskdash.core.errors import Conflict, TaskdashError
from taskdash.core.models import ScriptType
from taskdash.engine.docker import DockerEngine, EngineUnavailable
from taskdash.engine.spec import JOB_DIR, ContainerSpec, script_archive


@dataclass(frozen=True)
class RunRequest:
    """One run to launch: its hardened container (engine/spec.py) and its script."""

    run_id: UUID
    name: str
    spec: ContainerSpec
    script_type: ScriptType
    script: bytes
    # The image's inspect data on taskdash's engine (None: it is not there).
    image_info: Mapping[str, Any] | None


@dataclass
class Launched:
    """A started run: its ref, and its output from the first byte."""

    ref: str
    chunks: AsyncIterator[str]
    close: Callable[[], Awaitable[None]] | None = None


class RunExecutor(Protocol):
    async def launch(
        self,
        request: RunRequest,
        on_created: Callable[[str], None],
        may_start: Callable[[], bool],
    ) -> Launched:
        """Create the run's container with its script and start it. `on_created` gets the ref
        as soon as there is something to clean up or re-attach to; `may_start` is asked
        last (False: a stop came first, so nothing starts: Conflict). What a refused launch
        made is removed; after EngineUnavailable, what exists is left for the caller to find
        by the request's name."""
        ...

    def follow_output(self, ref: str) -> AsyncIterator[str]:
        """The output from the first byte, ending once the run has ended (re-attaching)."""
        ...

    async def wait(self, ref: str) -> int:
        """The exit code, once the run has ended: a long poll with no time limit."""
        ...

    async def stop(self, ref: str, grace_seconds: int) -> None: ...

    async def kill(self, ref: str) -> None: ...

    async def inspect(self, ref: str) -> dict[str, Any] | None:
        """Inspect data in `docker inspect`'s shape (by ref or name); None when it is gone."""
        ...

    async def remove(self, ref: str) -> None:
        """Remove the run's container and what came with it; nothing when it is gone."""
        ...


class DockerExecutor:
    """A run is a container on taskdash's engine: created, its script copied in, attached to
    before it starts (so not a byte of its output is missed)."""

    def __init__(self, engine: DockerEngine) -> None:
        self.engine = engine

    async def launch(
        self,
        request: RunRequest,
        on_created: Callable[[str], None],
        may_start: Callable[[], bool],
    ) -> Launched:
        container_id = await self.engine.create(request.spec, name=request.name)
        on_created(container_id)
        try:
            await self.engine.put_file(
                container_id, JOB_DIR, script_archive(request.script_type, request.script)
            )
        except TaskdashError as exc:
            if not isinstance(exc, EngineUnavailable):
                await self.engine.remove(container_id)
            raise
        attachment = await self.engine.attach(container_id)
        try:
            if not may_start():
                raise Conflict("stopped before start")
            await self.engine.start(container_id)
        except BaseException as exc:
            await attachment.close()
            if isinstance(exc, TaskdashError) and not isinstance(exc, EngineUnavailable):
                await self.engine.remove(container_id)
            raise
        return Launched(container_id, attachment.chunks(), attachment.close)

    def follow_output(self, ref: str) -> AsyncIterator[str]:
        return self.engine.follow_output(ref)

    async def wait(self, ref: str) -> int:
        return await self.engine.wait(ref)

    async def stop(self, ref: str, grace_seconds: int) -> None:
        await self.engine.stop(ref, grace_seconds)

    async def kill(self, ref: str) -> None:
        await self.engine.kill(ref)

    async def inspect(self, ref: str) -> dict[str, Any] | None:
        return await self.engine.inspect(ref)

    async def remove(self, ref: str) -> None:
        await self.engine.remove(ref)
