"""RunManager: queues, starts, supervises, stops and reconciles runs; owns their asyncio tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from typing import Any
from uuid import UUID

from taskdash.core.config import Settings
from taskdash.core.errors import Conflict, TaskdashError
from taskdash.core.models import (
    ACTIVE_STATUSES,
    Run,
    RunStatus,
    ScriptType,
    Task,
    Trigger,
    utcnow,
)
from taskdash.engine.deps import BuildFailed, DepsBuilder
from taskdash.engine.docker import JOB_DIR, LABEL_PREFIX, DockerRunner, tar_single_file
from taskdash.engine.spec import Limits, run_labels, run_spec, script_filename
from taskdash.logs.hub import LogHub, LogWriter, split_lines

log = logging.getLogger(__name__)

LOG_DRAIN_SECONDS = 10.0
RECONCILE_RETRY_SECONDS = 5.0


class FifoLimiter:
    """A counting limit whose waiters are served strictly in arrival order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted the slot, but cancelled: pass it on
            elif waiter in self._waiters:  # release() drops cancelled waiters itself
                self._waiters.remove(waiter)
            raise

    def force_acquire(self) -> None:
        """Count a slot taken before the queue existed (a run re-attached at start-up)."""
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        while self._waiters and self.active < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.active += 1
                waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


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


def task_limits(task: Task, settings: Settings) -> Limits:
    return Limits(
        timeout_seconds=task.timeout_seconds or settings.run_timeout_seconds,
        memory_mb=task.memory_mb or settings.run_memory_mb,
        cpus=task.cpus or settings.run_cpus,
    )


class RunManager:
    def __init__(self, settings: Settings, runner: DockerRunner, hub: LogHub) -> None:
        self.settings = settings
        self.runner = runner
        self.hub = hub
        self.deps = DepsBuilder(settings, runner)
        self.limiter = FifoLimiter(settings.max_concurrent_runs)
        self._executions: dict[UUID, asyncio.Task[None]] = {}
        self._containers: dict[UUID, str] = {}
        self._stop_requested: set[UUID] = set()
        self._scripts: dict[UUID, bytes] = {}
        self._reconciler: asyncio.Task[None] | None = None

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Reconcile what a previous process left behind, then resume the queue.

        When the engine does not answer yet, the server still starts (health says why) and
        reconciliation is retried in the background until the engine answers.
        """
        try:
            await self.reconcile()
        except TaskdashError as exc:
            log.warning("cannot reconcile runs yet: %s; retrying in the background", exc.message)
            self._reconciler = asyncio.create_task(self._reconcile_when_engine_answers())

    async def _reconcile_when_engine_answers(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_RETRY_SECONDS)
            try:
                await self.reconcile()
            except TaskdashError:
                continue
            log.info("Docker engine answers again: runs reconciled")
            return

    async def close(self) -> None:
        """Stop supervising; containers keep running and are re-attached at the next start."""
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
        executions = list(self._executions.values())
        for execution in executions:
            execution.cancel()
        await asyncio.gather(*executions, return_exceptions=True)

    # public operations -----------------------------------------------------------------------

    async def submit(self, task: Task, trigger: Trigger, *, script: bytes | None = None) -> Run:
        """Record a queued run of `task` and start executing it when a slot is free."""
        if script is None and task.script is None:
            raise Conflict(
                "this task's script was not kept (it was created with upload=false): "
                "upload it again to run it"
            )
        run = await Run.create(task=task, trigger=trigger, image=self.image_of(task))
        await Task.filter(id=task.id).update(last_run_id=run.id, updated_at=utcnow())
        task.last_run_id = run.id
        self.launch(run.id, task.id, script=script)
        return run

    def launch(self, run_id: UUID, task_id: UUID, *, script: bytes | None = None) -> None:
        """Execute an already recorded queued run (the scheduler records runs itself)."""
        if script is not None:
            self._scripts[run_id] = script
        self.hub.publish_status(run_id, task_id, RunStatus.QUEUED)
        self._spawn(run_id, self._execute(run_id))

    def image_of(self, task: Task) -> str:
        return task.image or self.settings.image_for(task.script_type.value)

    def is_live(self, run_id: UUID) -> bool:
        return run_id in self._executions

    async def stop(self, run: Run) -> Run:
        """Stop a queued or running run; answers the run once it has ended."""
        if run.status not in ACTIVE_STATUSES:
            raise Conflict(f"run {run.id} is not active (it is {run.status.value})")
        self._stop_requested.add(run.id)
        if run.status is RunStatus.QUEUED and await self._finish(run.id, RunStatus.STOPPED):
            # It never got a slot; its execution returns as soon as it gets one.
            await run.refresh_from_db()
            return run
        container_id = self._containers.get(run.id)
        if container_id is not None:
            await self.runner.stop(container_id, self.settings.stop_grace_seconds)
        execution = self._executions.get(run.id)
        if execution is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(execution), self.settings.stop_grace_seconds + 15
                )
        await run.refresh_from_db()
        return run

    async def kill_task_runs(self, task_id: UUID) -> None:
        """End every active run of a task at once (used before deleting it)."""
        runs = await Run.filter(task_id=task_id, status__in=ACTIVE_STATUSES)
        for run in runs:
            self._stop_requested.add(run.id)
            await self._finish(run.id, RunStatus.STOPPED, error="task deleted")
            container_id = self._containers.get(run.id)
            if container_id is not None:
                await self.runner.kill(container_id)
        for run in runs:
            execution = self._executions.get(run.id)
            if execution is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(execution), 20)

    async def live_inspect(self, run: Run) -> dict[str, Any] | None:
        if run.status is not RunStatus.RUNNING or not run.container_id:
            return None
        return await self.runner.inspect(run.container_id)

    # execution -------------------------------------------------------------------------------

    def _spawn(self, run_id: UUID, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("run %s crashed in the supervisor", run_id)
                await self._finish(run_id, RunStatus.ERROR, error="internal error, see server log")
            finally:
                self._executions.pop(run_id, None)
                self._containers.pop(run_id, None)
                self._stop_requested.discard(run_id)
                self._scripts.pop(run_id, None)

        self._executions[run_id] = asyncio.create_task(guarded(), name=f"run-{run_id}")

    async def _execute(self, run_id: UUID) -> None:
        async with self.limiter.slot():
            run = await Run.get_or_none(id=run_id).prefetch_related("task")
            if run is None or run.status is not RunStatus.QUEUED:
                return
            task: Task = run.task
            script = self._scripts.pop(run_id, None) or task.script
            if script is None:
                await self._finish(
                    run_id,
                    RunStatus.ERROR,
                    error="the server restarted before this run started, and its script "
                    "was not kept (upload=false)",
                )
                return
            writer = self.hub.open_writer(run_id)
            try:
                if not await self._mark_running(run, container_id=None):
                    return
                image = await self._prepare_image(task, run, writer)
                if image is None:
                    return
                container_id = await self._create_container(task, run, image, script)
                await self._mark_running(run, container_id=container_id)
                await self._supervise(run, container_id, writer, task_limits(task, self.settings))
            except TaskdashError as exc:
                await self._finish(run_id, RunStatus.ERROR, error=exc.message, writer=writer)
            finally:
                writer.close()

    async def _prepare_image(self, task: Task, run: Run, writer: LogWriter) -> str | None:
        """The image the run uses: the task's, or its cached requirements image."""
        image = self.image_of(task)
        if task.script_type is not ScriptType.PYTHON or not (task.requirements or "").strip():
            return image
        labels = run_labels(self.settings.instance, str(task.id), str(run.id), "build")
        try:
            return await self.deps.image_for(
                image,
                task.requirements or "",
                labels=labels,
                write=writer.write,
                on_container=lambda cid: self._containers.__setitem__(run.id, cid),
            )
        except BuildFailed as exc:
            status = RunStatus.STOPPED if run.id in self._stop_requested else RunStatus.FAILED
            await self._finish(run.id, status, exit_code=exc.exit_code, writer=writer)
            return None

    async def _create_container(self, task: Task, run: Run, image: str, script: bytes) -> str:
        limits = task_limits(task, self.settings)
        spec = run_spec(
            self.settings,
            image=image,
            script_type=task.script_type,
            script=script,
            env=task.env or {},
            limits=limits,
            labels=run_labels(self.settings.instance, str(task.id), str(run.id), "run"),
        )
        container_id = await self.runner.create(spec, name=f"taskdash-{run.id}")
        self._containers[run.id] = container_id
        uid, _, gid = self.settings.run_user.partition(":")
        archive = tar_single_file(
            script_filename(task.script_type),
            script,
            uid=int(uid) if uid.isdigit() else 0,
            gid=int(gid) if gid.isdigit() else 0,
            mode=0o755,
        )
        try:
            await self.runner.put_file(container_id, JOB_DIR, archive)
            if run.id in self._stop_requested:
                raise Conflict("stopped before start")
            await self.runner.start(container_id)
        except TaskdashError:
            await self.runner.remove(container_id)
            if run.id in self._stop_requested:
                await self._finish(run.id, RunStatus.STOPPED)
            raise
        return container_id

    async def _supervise(
        self,
        run: Run,
        container_id: str,
        writer: LogWriter,
        limits: Limits,
        *,
        skip_lines: int = 0,
    ) -> None:
        """Follow a started container to its end, then record the outcome and remove it."""
        self._containers[run.id] = container_id
        pump = asyncio.create_task(self._pump_output(container_id, writer, skip_lines))
        elapsed = (utcnow() - run.started_at).total_seconds() if run.started_at else 0.0
        timed_out = False
        try:
            try:
                exit_code = await asyncio.wait_for(
                    self.runner.wait(container_id),
                    max(limits.timeout_seconds - elapsed, 0.01),
                )
            except TimeoutError:
                timed_out = True
                await self.runner.kill(container_id)
                exit_code = await self.runner.wait(container_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), LOG_DRAIN_SECONDS)
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
        info = await self.runner.inspect(container_id)
        status = final_status(
            exit_code,
            stop_requested=run.id in self._stop_requested,
            timed_out=timed_out,
        )
        error = exit_reason(info, limits.memory_mb)
        if timed_out:
            error = f"timed out after {limits.timeout_seconds:g} s"
        await self._finish(
            run.id,
            status,
            exit_code=exit_code,
            error=error,
            docker_info=info,
            writer=writer,
        )
        await self.runner.remove(container_id)

    async def _pump_output(self, container_id: str, writer: LogWriter, skip_lines: int) -> None:
        pending = ""
        seen = 0
        async for chunk in self.runner.follow_output(container_id):
            lines, pending = split_lines(pending, chunk)
            if seen < skip_lines:
                drop = min(skip_lines - seen, len(lines))
                seen += drop
                lines = lines[drop:]
            writer.write(lines)
        if pending:
            writer.write([pending] if seen >= skip_lines else [])

    # state transitions -----------------------------------------------------------------------

    def _task_id(self, run: Run) -> UUID:
        task_id = run.task_id
        return task_id if isinstance(task_id, UUID) else UUID(str(task_id))

    async def _mark_running(self, run: Run, *, container_id: str | None) -> bool:
        """False when the run was stopped meanwhile (then it must not go on)."""
        fields: dict[str, Any] = {
            "status": RunStatus.RUNNING,
            "container_id": container_id,
        }
        if run.started_at is None:
            run.started_at = utcnow()
            fields["started_at"] = run.started_at
        updated = await Run.filter(id=run.id, status__in=ACTIVE_STATUSES).update(**fields)
        if updated and run.status is not RunStatus.RUNNING:
            run.status = RunStatus.RUNNING
            self.hub.publish_status(run.id, self._task_id(run), RunStatus.RUNNING)
        return bool(updated)

    async def _finish(
        self,
        run_id: UUID,
        status: RunStatus,
        *,
        exit_code: int | None = None,
        error: str | None = None,
        docker_info: dict[str, Any] | None = None,
        writer: LogWriter | None = None,
        finished_at: datetime | None = None,
    ) -> bool:
        """Move an active run to a terminal state; terminal states never change again."""
        fields: dict[str, Any] = {
            "status": status,
            "finished_at": finished_at or utcnow(),
        }
        if exit_code is not None:
            fields["exit_code"] = exit_code
        if error is not None:
            fields["error"] = error
        if docker_info is not None:
            fields["docker_info"] = docker_info
        if writer is not None:
            fields |= {
                "log_bytes": writer.bytes,
                "log_lines": writer.lines,
                "log_truncated": writer.truncated,
            }
        updated = await Run.filter(id=run_id, status__in=ACTIVE_STATUSES).update(**fields)
        if updated:
            run = await Run.get(id=run_id)
            self.hub.publish_status(run_id, self._task_id(run), status)
        elif docker_info is not None or writer is not None:
            # Already terminal (stopped while finishing): still keep what we learnt.
            keep = {k: v for k, v in fields.items() if k not in ("status", "finished_at")}
            keep.pop("error", None)
            await Run.filter(id=run_id).update(**keep)
        return bool(updated)

    # start-up reconciliation -----------------------------------------------------------------

    async def reconcile(self) -> None:
        containers = await self.runner.list_labelled(
            {f"{LABEL_PREFIX}instance": self.settings.instance}
        )
        by_run = {
            c.labels.get(f"{LABEL_PREFIX}run_id", ""): c
            for c in containers
            if c.labels.get(f"{LABEL_PREFIX}role") == "run"
        }
        resumed: set[str] = set()
        for run in await Run.filter(status=RunStatus.RUNNING).prefetch_related("task"):
            container = by_run.get(str(run.id))
            if run.container_id is None or container is None:
                await self._finish(
                    run.id,
                    RunStatus.ERROR,
                    error="the server stopped while this run was being prepared or its "
                    "container disappeared; run the task again",
                )
                continue
            resumed.add(container.id)
            self.limiter.force_acquire()
            self._spawn(run.id, self._resume(run, container.id))
        for container in containers:
            if container.id not in resumed:
                log.warning("removing orphan container %s", container.id[:12])
                await self.runner.remove(container.id)
        for run in await Run.filter(status=RunStatus.QUEUED).order_by("queued_at"):
            self.launch(run.id, self._task_id(run))

    async def _resume(self, run: Run, container_id: str) -> None:
        writer = self.hub.open_writer(run.id)
        log.info("re-attaching run %s to container %s", run.id, container_id[:12])
        try:
            await self._supervise(
                run,
                container_id,
                writer,
                task_limits(run.task, self.settings),
                skip_lines=writer.lines,
            )
        except TaskdashError as exc:
            await self._finish(run.id, RunStatus.ERROR, error=exc.message, writer=writer)
        finally:
            writer.close()
            self.limiter.release()
