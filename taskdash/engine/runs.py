"""RunManager: the runs this process executes. It queues them, owns the asyncio task of each
(the Supervisor does the work), stops them, and picks up what an earlier process left."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any
from uuid import UUID

from taskdash.core import clock
from taskdash.core.config import Settings
from taskdash.core.crypto import Keys
from taskdash.core.errors import Conflict, TaskdashError
from taskdash.core.models import ACTIVE_STATUSES, Run, RunStatus, Task, Trigger
from taskdash.core.principal import Principal
from taskdash.engine.docker import DockerEngine, EngineUnavailable
from taskdash.engine.limiter import FifoLimiter
from taskdash.engine.live import LiveRun
from taskdash.engine.reconcile import reconcile
from taskdash.engine.redact import env_names, redact_env
from taskdash.engine.replicas import ReplicaLease
from taskdash.engine.states import RunStates, task_id_of
from taskdash.engine.supervisor import Supervisor
from taskdash.engine.watch import EngineWatch
from taskdash.logs.store import LogStore

log = logging.getLogger(__name__)

# How often a replica looks for stop requests made through another replica.
STOP_POLL_SECONDS = 1.0

SCRIPT_NOT_KEPT = (
    "this task's script was not kept (it was created with upload=false): upload it again to run it"
)


class RunManager:
    def __init__(
        self, settings: Settings, engine: DockerEngine, logs: LogStore, keys: Keys
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.logs = logs
        self.hub = logs.hub
        self.states = RunStates(logs.hub, settings.replica)
        self.lease = ReplicaLease(
            settings.replica,
            settings.replica_lease_seconds,
            on_takeover=self.pick_up_leftovers,
            on_lost=self._let_go_of_taken_runs,
        )
        self.limiter = FifoLimiter(settings.max_concurrent_runs)
        self.watch = EngineWatch(engine, self.pick_up_leftovers)
        self.supervisor = Supervisor(
            settings, engine, logs, self.states, self.limiter, keys, self.watch
        )
        self._live: dict[UUID, LiveRun] = {}
        self._stop_poll: asyncio.Task[None] | None = None
        self._stops: set[asyncio.Task[None]] = set()

    # lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Pick up what a previous process left behind, then resume the queue.

        When the engine does not answer yet, the server still starts (health says why), new
        runs wait queued, and this runs once the engine answers; it runs again every time the
        engine answers after an outage (engine/watch.py), and when this replica takes over
        the runs of one that died (engine/replicas.py).
        """
        await self.lease.open()
        try:
            await self.pick_up_leftovers()
        except EngineUnavailable as exc:
            log.warning("cannot reconcile runs yet: %s; retrying once it answers", exc.message)
            self.watch.lost()
        self._stop_poll = asyncio.create_task(self._follow_stop_requests(), name="stop-requests")

    async def close(self) -> None:
        """Stop supervising; containers keep running and are re-attached at the next start."""
        await self.lease.close()
        await self.watch.close()
        if self._stop_poll is not None:
            self._stop_poll.cancel()
        jobs = [live.job for live in self._live.values() if live.job is not None]
        jobs += [*self._stops] + ([self._stop_poll] if self._stop_poll is not None else [])
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def pick_up_leftovers(self) -> None:
        """Reconcile what no job of this process supervises, then re-attach and start it."""
        leftovers = await reconcile(
            self.settings.instance,
            self.settings.replica,
            self.engine,
            self.states,
            self.logs,
            owned=self._live,
        )
        for found in leftovers.to_resume:
            if found.run.id in self._live:
                continue
            self.limiter.force_acquire()
            live = LiveRun(found.run.id, task_id_of(found.run), container_id=found.container_id)
            self._own(
                live,
                self.supervisor.resume(live, found.run, found.container_id, found.log_offset),
            )
        for run in leftovers.to_start:
            if run.id not in self._live:
                self.execute(run.id, task_id_of(run), claimed=run.owner == self.settings.replica)

    # operations ------------------------------------------------------------------------------

    async def queue(
        self, task: Task, trigger: Trigger, by: Principal, *, script: bytes | None = None
    ) -> Run:
        """Record a queued run of `task`, started by `by`, and execute it once a slot is free.

        `script` is a streamed script (upload=false) that the task does not keep.
        """
        if script is None and task.script is None:
            raise Conflict(SCRIPT_NOT_KEPT, code="script_not_kept")
        image = self.settings.image_for(task.script_type, task.image)
        run = await Run.create(
            task=task,
            trigger=trigger,
            image=image,
            started_by_kind=by.kind,
            started_by_name=by.name,
            owner=self.settings.replica,
        )
        await Task.filter(id=task.id).update(last_run_id=run.id, updated_at=clock.utcnow())
        task.last_run_id = run.id
        self.execute(run.id, task.id, script=script)
        return run

    def execute(
        self, run_id: UUID, task_id: UUID, *, script: bytes | None = None, claimed: bool = True
    ) -> None:
        """Execute a run already recorded as queued (the scheduler records its runs itself).
        `claimed`: recorded with this replica as its owner; otherwise it is claimed first, and
        left alone when another replica claimed it already."""
        live = LiveRun(run_id, task_id, script=script)
        self.states.announce_queued(run_id, task_id)
        self._own(live, self.supervisor.execute(live) if claimed else self._claim_first(live))

    async def _claim_first(self, live: LiveRun) -> None:
        if await self.states.claim(live.run_id):
            await self.supervisor.execute(live)

    async def stop(self, run: Run) -> Run:
        """Stop a queued or running run; answers the run once it has ended."""
        if run.status not in ACTIVE_STATUSES:
            raise Conflict(f"run {run.id} is not active (it is {run.status.value})")
        live = self._live.get(run.id)
        if live is None and run.status is RunStatus.RUNNING and self._elsewhere(run):
            return await self._ask_owner_to_stop(run)
        if live is not None:
            live.stop_requested = True
        if run.status is RunStatus.QUEUED and await self.states.finish(run.id, RunStatus.STOPPED):
            # It never got a slot; its job returns as soon as it gets one.
            await run.refresh_from_db()
            return run
        if live is not None and live.container_id is not None:
            await self.engine.stop(live.container_id, self.settings.stop_grace_seconds)
        if live is not None and live.job is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(live.job), self.settings.stop_grace_seconds + 15
                )
        await run.refresh_from_db()
        return run

    async def kill_task_runs(self, task_id: UUID) -> None:
        """End every active run of a task at once (used before deleting it)."""
        runs = await Run.filter(task_id=task_id, status__in=ACTIVE_STATUSES)
        elsewhere = [
            run
            for run in runs
            if run.id not in self._live and run.status is RunStatus.RUNNING and self._elsewhere(run)
        ]
        await asyncio.gather(*(self._ask_owner_to_stop(run) for run in elsewhere))
        for run in runs:
            live = self._live.get(run.id)
            if live is not None:
                live.stop_requested = True
            await self.states.finish(run.id, RunStatus.STOPPED, error="task deleted")
            if live is not None and live.container_id is not None:
                await self.engine.kill(live.container_id)
        for run in runs:
            live = self._live.get(run.id)
            if live is not None and live.job is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(live.job), 20)

    async def live_inspect(self, run: Run) -> dict[str, Any] | None:
        """The container's inspect data while the run is running (secret values masked);
        None otherwise."""
        if run.status is not RunStatus.RUNNING or not run.container_id:
            return None
        info = await self.engine.inspect(run.container_id)
        live = self._live.get(run.id)
        if live is None:  # not supervised by this process: mask every env value
            return redact_env(info, env_names(info))
        return redact_env(info, live.secrets)

    # other replicas' runs ----------------------------------------------------------------------

    def _elsewhere(self, run: Run) -> bool:
        return run.owner is not None and run.owner != self.settings.replica

    async def _ask_owner_to_stop(self, run: Run) -> Run:
        """Another replica supervises the run (its container may be on that replica's engine):
        ask it through the database and wait until it has ended the run, as long as a local
        stop may take. A replica that died meanwhile leaves it to the one taking over."""
        await Run.filter(id=run.id).update(stop_requested=True)
        deadline = asyncio.get_running_loop().time() + self.settings.stop_grace_seconds + 15
        while asyncio.get_running_loop().time() < deadline:
            await run.refresh_from_db()
            if run.status not in ACTIVE_STATUSES:
                break
            await asyncio.sleep(STOP_POLL_SECONDS / 4)
        return run

    async def _follow_stop_requests(self) -> None:
        """Stop this replica's runs that another replica was asked to stop."""
        while True:
            await asyncio.sleep(STOP_POLL_SECONDS)
            if not self._live:
                continue
            try:
                wanted = await Run.filter(
                    owner=self.settings.replica,
                    stop_requested=True,
                    status__in=ACTIVE_STATUSES,
                    id__in=list(self._live),
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup: ask again next time
                log.exception("reading stop requests failed")
                continue
            for run in wanted:
                live = self._live.get(run.id)
                if live is None or live.stop_requested:
                    continue
                stopping = asyncio.create_task(self._stop_quietly(run), name=f"stop-{run.id}")
                self._stops.add(stopping)
                stopping.add_done_callback(self._stops.discard)

    async def _let_go_of_taken_runs(self) -> None:
        """This replica's lease lapsed and another replica took its runs: stop supervising
        those (their containers go on, under the new owner)."""
        owners = dict(await Run.filter(id__in=list(self._live)).values_list("id", "owner"))
        for run_id, live in list(self._live.items()):
            if owners.get(run_id) not in (None, self.settings.replica) and live.job is not None:
                log.warning("run %s is now supervised by replica %s", run_id, owners[run_id])
                live.job.cancel()

    async def _stop_quietly(self, run: Run) -> None:
        try:
            await self.stop(run)
        except TaskdashError as exc:  # it ended meanwhile, or the engine is away
            log.info("stop requested for run %s through another replica: %s", run.id, exc.message)

    # ownership -------------------------------------------------------------------------------

    def _own(self, live: LiveRun, work: Awaitable[None]) -> None:
        """Run `work` as the run's job until it ends; a crash in it ends the run as error."""

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("run %s crashed in the supervisor", live.run_id)
                await self.states.finish(
                    live.run_id, RunStatus.ERROR, error="internal error, see server log"
                )
                if live.container_id is not None:  # never left running unsupervised
                    with contextlib.suppress(TaskdashError):
                        await self.engine.remove(live.container_id)
            finally:
                self._live.pop(live.run_id, None)

        self._live[live.run_id] = live
        live.job = asyncio.create_task(guarded(), name=f"run-{live.run_id}")
