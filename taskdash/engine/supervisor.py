"""Takes one run from queued to its final state: requirements image, container, output, outcome.

Losing the Docker engine is not the end of a run. Before its container started, the run goes
back to `queued` and is prepared again once the engine answers (nothing of the script ran);
after, it waits for the engine and follows the same container again: re-attached if it still
runs (an engine with live-restore), finished from what the engine recorded if it ended
meanwhile, `error` if the engine came back without it. The run's deadline holds throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from taskdash.core import clock
from taskdash.core.config import Settings
from taskdash.core.crypto import Keys, SecretsUnreadable
from taskdash.core.errors import TaskdashError
from taskdash.core.failpoints import hit
from taskdash.core.models import Run, RunStatus, ScriptType, Task
from taskdash.engine.deps import BuildFailed, DepsBuilder
from taskdash.engine.docker import DockerEngine, EngineUnavailable
from taskdash.engine.executor import RunRequest
from taskdash.engine.limiter import FifoLimiter
from taskdash.engine.live import LiveRun
from taskdash.engine.outcome import container_finished, container_started, is_running, run_outcome
from taskdash.engine.output import ContainerOutput
from taskdash.engine.redact import redact_env
from taskdash.engine.spec import (
    LABEL_PREFIX,
    Limits,
    declared_volumes,
    run_labels,
    run_spec,
    task_limits,
)
from taskdash.engine.states import RunStates
from taskdash.engine.swarm import run_executor
from taskdash.engine.watch import EngineWatch
from taskdash.logs.store import LogStore, LogWriter

log = logging.getLogger(__name__)

LOG_DRAIN_SECONDS = 10.0
# On a run's container: how many lines its log held before the container's own output (the
# build's), so a process re-attaching after a crash knows how many of the container's lines
# are stored.
LOG_OFFSET_LABEL = f"{LABEL_PREFIX}log_offset"
NOT_KEPT = (
    "the server restarted before this run started, and its script was not kept (upload=false)"
)
CONTAINER_GONE = (
    "the Docker engine came back without this run's container (it was removed, or the "
    "engine lost its data); run the task again"
)
CONTAINER_VANISHED = "this run's container disappeared before it ended; run the task again"
REQUEUED_NOTE = (
    "[taskdash] the Docker engine stopped answering before this run started: it waits queued "
    "and starts again once the engine answers"
)
ENDED_UNSEEN_NOTE = (
    "[taskdash] the container ended while the Docker engine was away: what it printed after "
    "the engine stopped may be missing"
)


def container_name(run_id: UUID) -> str:
    return f"taskdash-{run_id}"


@dataclass
class Following:
    """A started run container, and the stream its output is read from now."""

    container_id: str
    chunks: AsyncIterator[str]
    close: Callable[[], Awaitable[None]] | None = None
    # Inspect the container before following it: it was started by another process, or the
    # engine was away since; it may have ended meanwhile, or be gone.
    must_check: bool = False
    engine_lost: bool = False
    ended_unseen: bool = False

    async def close_stream(self) -> None:
        if self.close is not None:
            close, self.close = self.close, None
            await close()


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        engine: DockerEngine,
        logs: LogStore,
        states: RunStates,
        limiter: FifoLimiter,
        keys: Keys,
        watch: EngineWatch,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.logs = logs
        self.states = states
        self.limiter = limiter
        self.keys = keys
        self.watch = watch
        # The run's own container goes through the executor (a container here, or a swarm
        # service); requirements builds always run on this engine.
        self.executor = run_executor(engine)
        self.deps = DepsBuilder(settings, engine)

    def secrets_of(self, task: Task) -> dict[str, str]:
        return self.keys.unseal(task.secret_env) if task.secret_env else {}

    async def execute(self, live: LiveRun) -> None:
        """A queued run, once a slot is free and the engine answers: prepare, start and
        follow its container."""
        async with self.limiter.slot():
            await self.watch.answering()
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
            writer = await self.logs.open_writer_off_loop(run.id, masks=list(live.secrets.values()))
            try:
                await self._run(live, run, task, script, writer)
            except TaskdashError as exc:
                await self.states.finish(run.id, RunStatus.ERROR, error=exc.message, writer=writer)
            finally:
                writer.close()

    async def resume(self, live: LiveRun, run: Run, container_id: str, log_offset: int) -> None:
        """A run left `running` by an earlier process, re-attached to its container; its log
        continues after the last stored line. Its limiter slot was taken by the caller."""
        try:
            live.secrets = self.secrets_of(run.task)
        except SecretsUnreadable:
            live.secrets = {}
        writer = await self.logs.open_writer_off_loop(run.id, masks=list(live.secrets.values()))
        log.info("re-attaching run %s to container %s", run.id, container_id[:12])
        try:
            output = ContainerOutput(writer, stored=max(writer.lines - log_offset, 0))
            follow = Following(
                container_id, self.executor.follow_output(container_id), must_check=True
            )
            await self._supervise(live, run, follow, output, task_limits(run.task, self.settings))
        except TaskdashError as exc:
            await self.states.finish(run.id, RunStatus.ERROR, error=exc.message, writer=writer)
        finally:
            writer.close()
            self.limiter.release()

    # preparing and starting ------------------------------------------------------------------

    async def _run(
        self, live: LiveRun, run: Run, task: Task, script: bytes, writer: LogWriter
    ) -> None:
        while True:
            await self.watch.answers_now()
            if not await self.states.mark_running(run):
                return
            try:
                follow = await self._start(live, run, task, script, writer)
                if follow is None:
                    return
            except EngineUnavailable:
                self.watch.lost()
                follow = await self._recover_start(live, run, writer)
                if follow is None:
                    continue  # queued again: prepared again once the engine answers
            live.script = None
            limits = task_limits(task, self.settings)
            await self._supervise(live, run, follow, ContainerOutput(writer), limits)
            return

    async def _start(
        self, live: LiveRun, run: Run, task: Task, script: bytes, writer: LogWriter
    ) -> Following | None:
        """Build, then launch; None when the run ended before (build failed, stopped)."""
        image = await self._prepare_image(live, run, task, writer)
        if image is None:
            return None
        request = await self._request(live, task, image, script, writer)
        try:
            launched = await self.executor.launch(
                request,
                on_created=lambda ref: self._created(live, ref),
                may_start=lambda: not live.stop_requested,
            )
        except TaskdashError as exc:
            if live.stop_requested and not isinstance(exc, EngineUnavailable):
                await self.states.finish(run.id, RunStatus.STOPPED)
            raise
        await self.states.mark_started(run, launched.ref)
        hit("run.started")
        return Following(launched.ref, launched.chunks, launched.close)

    def _created(self, live: LiveRun, ref: str) -> None:
        live.container_id = ref
        hit("run.created")

    async def _prepare_image(
        self, live: LiveRun, run: Run, task: Task, writer: LogWriter
    ) -> str | None:
        """The image the run uses: the task's, or its cached requirements image; None when
        installing the requirements failed (the run is then finished). The requirements are
        the build phase: build_started_at to build_finished_at, with its own time limit,
        before the run's clock starts."""
        image = self.settings.image_for(task.script_type, task.image)
        if task.script_type is not ScriptType.PYTHON or not (task.requirements or "").strip():
            return image
        labels = run_labels(self.settings.instance, str(task.id), str(live.run_id), "build")
        await self.states.mark_build(run, started=True)
        try:
            image = await self.deps.image_for(
                image,
                task.requirements or "",
                labels=labels,
                write=writer.write,
                on_container=lambda container_id: setattr(live, "container_id", container_id),
            )
        except BuildFailed as exc:
            await self.states.mark_build(run, started=False)
            status = RunStatus.STOPPED if live.stop_requested else RunStatus.FAILED
            await self.states.finish(live.run_id, status, exit_code=exc.exit_code, writer=writer)
            return None
        await self.states.mark_build(run, started=False)
        return image

    async def _request(
        self, live: LiveRun, task: Task, image: str, script: bytes, writer: LogWriter
    ) -> RunRequest:
        image_info = await self.engine.image_info(image)
        image_volumes = declared_volumes(image_info)
        labels = run_labels(self.settings.instance, str(task.id), str(live.run_id), "run")
        spec = run_spec(
            self.settings,
            image=image,
            script_type=task.script_type,
            script=script,
            env={**(task.env or {}), **live.secrets},
            limits=task_limits(task, self.settings),
            labels={**labels, LOG_OFFSET_LABEL: str(writer.lines)},
            image_volumes=image_volumes,
        )
        return RunRequest(
            live.run_id, container_name(live.run_id), spec, task.script_type, script, image_info
        )

    async def _recover_start(self, live: LiveRun, run: Run, writer: LogWriter) -> Following | None:
        """The engine was lost before the run's container was known to start. Once it
        answers: follow the container if it did start; else remove what the run left (its
        build's or its own container) and queue it again (None)."""
        while True:
            await self.watch.answering()
            try:
                info = await self.executor.inspect(container_name(run.id))
                if info is not None and container_started(info) is not None:
                    container_id = str(info["Id"])
                    live.container_id = container_id
                    chunks = self.executor.follow_output(container_id)
                    return Following(container_id, chunks, must_check=True, engine_lost=True)
                if live.container_id is not None:
                    await self.engine.remove(live.container_id)
                await self.executor.remove(container_name(run.id))
            except EngineUnavailable:
                self.watch.lost()
                continue
            live.container_id = None
            writer.write([REQUEUED_NOTE])
            await self.states.requeue(run)
            return None

    # following -------------------------------------------------------------------------------

    async def _supervise(
        self, live: LiveRun, run: Run, follow: Following, output: ContainerOutput, limits: Limits
    ) -> None:
        """Follow a started container to its end, through losses of the engine, then record
        the outcome and remove it."""
        try:
            while True:
                try:
                    await self._follow_to_end(live, run, follow, output, limits)
                    return
                except EngineUnavailable as exc:
                    log.warning("run %s lost the Docker engine: %s", run.id, exc.message)
                    self.watch.lost()
                    await follow.close_stream()
                    output.again()
                    await self.watch.answering()
                    log.info(
                        "re-attaching run %s to container %s", run.id, follow.container_id[:12]
                    )
                    follow.chunks = self.executor.follow_output(follow.container_id)
                    follow.must_check = follow.engine_lost = True
                except TaskdashError:
                    # Refused midway (a task the swarm could not run, a container gone): the
                    # run ends as error, and what is left of it goes now.
                    with contextlib.suppress(TaskdashError):
                        await self.executor.remove(follow.container_id)
                    raise
        finally:
            await follow.close_stream()

    async def _follow_to_end(
        self, live: LiveRun, run: Run, follow: Following, output: ContainerOutput, limits: Limits
    ) -> None:
        if follow.must_check:
            info = await self.executor.inspect(follow.container_id)
            if info is None:
                error = CONTAINER_GONE if follow.engine_lost else CONTAINER_VANISHED
                await self.states.finish(run.id, RunStatus.ERROR, error=error, writer=output.writer)
                return
            if run.started_at is None:  # it started, but the start was not recorded
                await self.states.mark_started(run, follow.container_id, container_started(info))
            follow.ended_unseen = not is_running(info)
            follow.must_check = False
        exit_code, deadline_passed = await self._follow(live, run, follow, output, limits)
        await self._finish(live, run, follow, output, limits, exit_code, deadline_passed)

    async def _follow(
        self, live: LiveRun, run: Run, follow: Following, output: ContainerOutput, limits: Limits
    ) -> tuple[int, bool]:
        """Pump the output into the log until the container ends or its deadline passes (then
        it is killed); its exit code, and whether the deadline passed first."""
        container_id = follow.container_id
        pump = asyncio.create_task(self._pump(follow.chunks, output))
        try:
            if live.stop_requested and not follow.ended_unseen:
                # Asked while the engine was away, or while this follower was not there.
                await self.executor.stop(container_id, self.settings.stop_grace_seconds)
            deadline_passed = False
            try:
                async with asyncio.timeout(self._time_left(run, limits)):
                    exit_code = await self.executor.wait(container_id)
            except TimeoutError:
                deadline_passed = True
                await self.executor.kill(container_id)
                exit_code = await self.executor.wait(container_id)
            hit("run.exited")
            await asyncio.wait([pump], timeout=LOG_DRAIN_SECONDS)
            if pump.done() and (failure := pump.exception()) is not None:
                raise failure  # EngineUnavailable: read the output again through the logs API
            output.end()
            return exit_code, deadline_passed
        finally:
            if not pump.done():
                pump.cancel()
                await asyncio.wait([pump])

    def _time_left(self, run: Run, limits: Limits) -> float:
        """Seconds to the run's deadline: its timeout counts from its container's start."""
        if run.started_at is None:
            return limits.timeout_seconds
        return limits.timeout_seconds - (clock.utcnow() - run.started_at).total_seconds()

    async def _pump(self, chunks: AsyncIterator[str], output: ContainerOutput) -> None:
        async for chunk in chunks:
            output.feed(chunk)

    async def _finish(
        self,
        live: LiveRun,
        run: Run,
        follow: Following,
        output: ContainerOutput,
        limits: Limits,
        exit_code: int,
        deadline_passed: bool,
    ) -> None:
        container_id = follow.container_id
        info = await self.executor.inspect(container_id)
        ended_while_away = follow.engine_lost and follow.ended_unseen
        if ended_while_away:
            output.writer.write([ENDED_UNSEEN_NOTE])
        status, error = run_outcome(
            exit_code,
            info,
            timeout_seconds=limits.timeout_seconds,
            memory_mb=limits.memory_mb,
            stop_requested=live.stop_requested,
            deadline_passed=deadline_passed,
            ended_while_engine_away=ended_while_away,
        )
        await self.states.finish(
            run.id,
            status,
            exit_code=exit_code,
            error=error,
            docker_info=redact_env(info, live.secrets),
            writer=output.writer,
            # It ended while nobody followed it: when the engine says, not when we noticed.
            finished_at=container_finished(info) if follow.ended_unseen else None,
        )
        try:
            await self.executor.remove(container_id)
        except EngineUnavailable:
            self.watch.lost()  # the reconciliation once it is back removes it
