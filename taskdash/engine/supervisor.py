"""Takes one run from queued to its final state: image, container, output, outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from taskdash.core import clock
from taskdash.core.config import Settings
from taskdash.core.crypto import Keys, SecretsUnreadable
from taskdash.core.errors import Conflict, TaskdashError
from taskdash.core.models import Run, RunStatus, ScriptType, Task
from taskdash.engine.deps import BuildFailed, DepsBuilder
from taskdash.engine.docker import DockerEngine
from taskdash.engine.limiter import FifoLimiter
from taskdash.engine.live import LiveRun
from taskdash.engine.outcome import exit_reason, final_status
from taskdash.engine.redact import redact_env
from taskdash.engine.spec import (
    JOB_DIR,
    Limits,
    declared_volumes,
    run_labels,
    run_spec,
    script_archive,
    task_limits,
)
from taskdash.engine.states import RunStates
from taskdash.logs.lines import split_lines
from taskdash.logs.store import LogStore, LogWriter

log = logging.getLogger(__name__)

LOG_DRAIN_SECONDS = 10.0
NOT_KEPT = (
    "the server restarted before this run started, and its script was not kept (upload=false)"
)


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        engine: DockerEngine,
        logs: LogStore,
        states: RunStates,
        limiter: FifoLimiter,
        keys: Keys,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.logs = logs
        self.states = states
        self.limiter = limiter
        self.keys = keys
        self.deps = DepsBuilder(settings, engine)

    def secrets_of(self, task: Task) -> dict[str, str]:
        return self.keys.unseal(task.secret_env) if task.secret_env else {}

    async def execute(self, live: LiveRun) -> None:
        """A queued run, once a slot is free: prepare, start and follow its container."""
        async with self.limiter.slot():
            run = await Run.get_or_none(id=live.run_id).prefetch_related("task")
            if run is None or run.status is not RunStatus.QUEUED:
                return
            task: Task = run.task
            script = live.script or task.script
            if script is None:
                await self.states.finish(run.id, RunStatus.ERROR, error=NOT_KEPT)
                return
            try:
                live.secrets = self.secrets_of(task)
            except SecretsUnreadable as exc:
                await self.states.finish(run.id, RunStatus.ERROR, error=str(exc))
                return
            writer = self.logs.open_writer(run.id, masks=list(live.secrets.values()))
            try:
                if not await self.states.mark_running(run, container_id=None):
                    return
                image = await self._prepare_image(live, task, writer)
                if image is None:
                    return
                container_id = await self._start_container(live, task, image, script)
                live.script = None
                await self.states.mark_running(run, container_id=container_id)
                await self._follow(
                    live, run, container_id, writer, task_limits(task, self.settings)
                )
            except TaskdashError as exc:
                await self.states.finish(run.id, RunStatus.ERROR, error=exc.message, writer=writer)
            finally:
                writer.close()

    async def resume(self, live: LiveRun, run: Run, container_id: str) -> None:
        """A run left `running` by an earlier process, re-attached to its container; its log
        continues after the last stored line. Its limiter slot was taken by the caller."""
        try:
            live.secrets = self.secrets_of(run.task)
        except SecretsUnreadable:
            live.secrets = {}
        writer = self.logs.open_writer(run.id, masks=list(live.secrets.values()))
        log.info("re-attaching run %s to container %s", run.id, container_id[:12])
        try:
            limits = task_limits(run.task, self.settings)
            await self._follow(live, run, container_id, writer, limits, skip_lines=writer.lines)
        except TaskdashError as exc:
            await self.states.finish(run.id, RunStatus.ERROR, error=exc.message, writer=writer)
        finally:
            writer.close()
            self.limiter.release()

    async def _prepare_image(self, live: LiveRun, task: Task, writer: LogWriter) -> str | None:
        """The image the run uses: the task's, or its cached requirements image; None when
        installing the requirements failed (the run is then finished)."""
        image = self.settings.image_for(task.script_type, task.image)
        if task.script_type is not ScriptType.PYTHON or not (task.requirements or "").strip():
            return image
        labels = run_labels(self.settings.instance, str(task.id), str(live.run_id), "build")
        try:
            return await self.deps.image_for(
                image,
                task.requirements or "",
                labels=labels,
                write=writer.write,
                on_container=lambda container_id: setattr(live, "container_id", container_id),
            )
        except BuildFailed as exc:
            status = RunStatus.STOPPED if live.stop_requested else RunStatus.FAILED
            await self.states.finish(live.run_id, status, exit_code=exc.exit_code, writer=writer)
            return None

    async def _start_container(self, live: LiveRun, task: Task, image: str, script: bytes) -> str:
        image_volumes = declared_volumes(await self.engine.image_info(image))
        spec = run_spec(
            self.settings,
            image=image,
            script_type=task.script_type,
            script=script,
            env={**(task.env or {}), **live.secrets},
            limits=task_limits(task, self.settings),
            labels=run_labels(self.settings.instance, str(task.id), str(live.run_id), "run"),
            image_volumes=image_volumes,
        )
        container_id = await self.engine.create(spec, name=f"taskdash-{live.run_id}")
        live.container_id = container_id
        try:
            await self.engine.put_file(
                container_id, JOB_DIR, script_archive(task.script_type, script)
            )
            if live.stop_requested:
                raise Conflict("stopped before start")
            await self.engine.start(container_id)
        except TaskdashError:
            await self.engine.remove(container_id)
            if live.stop_requested:
                await self.states.finish(live.run_id, RunStatus.STOPPED)
            raise
        return container_id

    async def _follow(
        self,
        live: LiveRun,
        run: Run,
        container_id: str,
        writer: LogWriter,
        limits: Limits,
        *,
        skip_lines: int = 0,
    ) -> None:
        """Follow a started container to its end, then record the outcome and remove it."""
        live.container_id = container_id
        pump = asyncio.create_task(self._pump_output(container_id, writer, skip_lines))
        elapsed = (clock.utcnow() - run.started_at).total_seconds() if run.started_at else 0.0
        timed_out = False
        try:
            try:
                exit_code = await asyncio.wait_for(
                    self.engine.wait(container_id),
                    max(limits.timeout_seconds - elapsed, 0.01),
                )
            except TimeoutError:
                timed_out = True
                await self.engine.kill(container_id)
                exit_code = await self.engine.wait(container_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), LOG_DRAIN_SECONDS)
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
        info = redact_env(await self.engine.inspect(container_id), live.secrets)
        status = final_status(exit_code, stop_requested=live.stop_requested, timed_out=timed_out)
        error = exit_reason(info, limits.memory_mb)
        if timed_out:
            error = f"timed out after {limits.timeout_seconds:g} s"
        await self.states.finish(
            run.id, status, exit_code=exit_code, error=error, docker_info=info, writer=writer
        )
        await self.engine.remove(container_id)

    async def _pump_output(self, container_id: str, writer: LogWriter, skip_lines: int) -> None:
        pending = ""
        seen = 0
        async for chunk in self.engine.follow_output(container_id):
            lines, pending = split_lines(pending, chunk)
            if seen < skip_lines:
                drop = min(skip_lines - seen, len(lines))
                seen += drop
                lines = lines[drop:]
            writer.write(lines)
        if pending:
            writer.write([pending] if seen >= skip_lines else [])
