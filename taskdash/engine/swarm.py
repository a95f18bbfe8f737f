"""Runs on a Docker Swarm: each one a `replicated-job` service (TASKDASH_EXECUTOR=swarm).

taskdash talks to one engine, a manager of the swarm; the run goes wherever the swarm places
it. Its script travels as a swarm config (no shared folder), its output comes back through
`GET /services/{id}/logs`, its state and exit code from its task (`GET /tasks`), polled.

Stopping a job service on Engine 20.10 (API 1.41): removing it neither stops nor removes its
task (moby/moby#44312; swarmkit#3112 fixed it for Engine 23), so a run is stopped by updating
its service to a next iteration that no node can take (a placement constraint on a node label
nobody has): the swarm then shuts the current task down (SIGTERM, SIGKILL after the service's
stop grace period) and removes it with its container, and nothing runs again. Removing a run
retires it the same way first, so its container does not stay behind on its node.

RunManager and the reconciliation speak of containers (engine/runs.py, engine/reconcile.py):
SwarmEngine is the engine they are given, on which a run's "container" is its service.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import aiohttp

from taskdash.core.config import Settings
from taskdash.core.errors import Conflict, EngineError, TaskdashError
from taskdash.engine.docker import (
    CALL_TIMEOUT,
    ContainerGone,
    ContainerSummary,
    DockerEngine,
    EngineUnavailable,
    ImageNotFound,
    TlsFiles,
)
from taskdash.engine.executor import DockerExecutor, Launched, RunExecutor, RunRequest
from taskdash.engine.spec import LABEL_PREFIX, script_filename
from taskdash.engine.swarm_spec import (
    ENDED_STATES,
    ScriptConfig,
    image_reference,
    inspect_view,
    network_spec,
    script_target,
    service_spec,
    task_exit_code,
    task_state,
)

log = logging.getLogger(__name__)

# A constraint no node meets: a retired service's next iteration is never placed.
RETIRED = "node.labels.taskdash.retired==never"
POLL_FIRST_SECONDS = 0.05
POLL_MAX_SECONDS = 1.0
# Most runs are short: their end is looked for every POLL_FIRST_SECONDS this long.
POLL_FAST_FOR_SECONDS = 3.0
# How long a rejected task must stay its service's newest before the run ends as error.
REJECTED_FINAL_SECONDS = 1.0
# How long removing a run waits for the swarm to let go of its task (it takes milliseconds).
RETIRE_SECONDS = 10.0
# The task's record was removed before its exit code was read (a stop: see above).
UNKNOWN_EXIT = -1
NON_ZERO_EXIT = "task: non-zero exit"
SWARM_TASK_LABEL = "com.docker.swarm.task.id"
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
NOT_A_MANAGER = (
    "TASKDASH_EXECUTOR=swarm needs the engine taskdash talks to to be a swarm manager "
    "(`docker swarm init`, or point TASKDASH_DOCKER_URL at a manager)"
)
IMAGE_NOT_HERE = (
    "image {image!r} is not on the swarm manager's engine: with TASKDASH_EXECUTOR=swarm, pull "
    "or build it there (its digest and VOLUMEs are read there), or name an image that exists"
)
REFUSED = "the swarm could not run this run's task ({state}): {error}"


def is_container_id(ref: str) -> bool:
    """A container's id (64 hex digits), not a swarm object's (25 base-36 characters)."""
    return CONTAINER_ID.fullmatch(ref) is not None


def retired(spec: Mapping[str, Any]) -> bool:
    placement = (spec.get("TaskTemplate") or spec).get("Placement") or {}
    return RETIRED in (placement.get("Constraints") or [])


def run_task(tasks: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The task that runs the script: of the first iteration (a retired service's next one
    never runs), the newest one the swarm did not reject (it replaces a task a node turned
    down), else the newest rejected one."""
    mine = [task for task in tasks if not retired(task.get("Spec") or {})]
    if not mine:
        return None
    placed = [task for task in mine if task_state(task) != "rejected"] or mine
    return max(placed, key=lambda task: str(task.get("CreatedAt") or ""))


def live_tasks(tasks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The first iteration's tasks that have not ended (a retired service's next iteration's
    never run)."""
    return [
        task
        for task in tasks
        if not retired(task.get("Spec") or {}) and task_state(task) not in ENDED_STATES
    ]


def container_of(task: Mapping[str, Any] | None) -> str | None:
    status = (task or {}).get("Status") or {}
    container_id = (status.get("ContainerStatus") or {}).get("ContainerID")
    return str(container_id) if container_id else None


def refused(task: Mapping[str, Any]) -> str | None:
    """Why the swarm could not run the task's container at all; None when it ran."""
    status = task.get("Status") or {}
    state, error = task_state(task), str(status.get("Err") or "")
    if state == "rejected" or (state == "failed" and not error.startswith(NON_ZERO_EXIT)):
        return REFUSED.format(state=state, error=error or "no reason given")
    return None


def side_labels(labels: Mapping[str, str], role: str) -> dict[str, str]:
    """A run's config and network carry its labels, with a role of their own (not `run`)."""
    keep = ("instance", "task_id", "run_id")
    return {f"{LABEL_PREFIX}{k}": labels[f"{LABEL_PREFIX}{k}"] for k in keep} | {
        f"{LABEL_PREFIX}role": role
    }


class SwarmExecutor:
    def __init__(self, engine: SwarmEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._node_id: str | None = None
        # Per service: the poll that ends with its task, shared by `wait` and the output.
        self._ends: dict[str, asyncio.Task[Mapping[str, Any] | None]] = {}
        self._hurry: dict[str, asyncio.Event] = {}
        self._last_task: dict[str, Mapping[str, Any]] = {}

    async def close(self) -> None:
        polls = list(self._ends.values())
        for poll in polls:
            poll.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        self._ends.clear()

    async def node_id(self) -> str:
        if self._node_id is None:
            node, manager = await self.engine.swarm_node()
            if not manager:
                raise EngineError(NOT_A_MANAGER)
            self._node_id = node
        return self._node_id

    # launching -------------------------------------------------------------------------------

    async def launch(
        self,
        request: RunRequest,
        on_created: Callable[[str], None],
        may_start: Callable[[], bool],
    ) -> Launched:
        spec = request.spec
        if request.image_info is None:
            raise ImageNotFound(IMAGE_NOT_HERE.format(image=spec.image))
        image, pinned = image_reference(spec.image, request.image_info, await self.node_id())
        name = request.name
        config_id = await self.engine.create_config(
            name, request.script, side_labels(spec.labels, "script")
        )
        try:
            network = await self._network(name, spec.labels)
            if not may_start():
                raise Conflict("stopped before start")
            body = service_spec(
                replace(spec, image=image),
                name=name,
                script=ScriptConfig(
                    config_id, name, script_target(script_filename(request.script_type))
                ),
                network=network,
                constraints=[*pinned, *self.settings.swarm_constraint_list],
                stop_grace_seconds=self.settings.stop_grace_seconds,
            )
            service_id = await self.engine.create_service(body)
        except BaseException as exc:
            if not isinstance(exc, EngineUnavailable):
                with contextlib.suppress(TaskdashError):
                    await self._remove_side(name)
            raise
        on_created(service_id)
        return Launched(service_id, self.follow_output(service_id))

    async def _network(self, name: str, labels: Mapping[str, str]) -> str:
        """The run's own internal network, unless TASKDASH_RUN_NETWORK names another."""
        if self.settings.run_network != "none":
            return self.settings.run_network
        await self.engine.create_network(network_spec(name, side_labels(labels, "network")))
        return name

    # following -------------------------------------------------------------------------------

    async def follow_output(self, ref: str) -> AsyncIterator[str]:
        """The service's output as it comes; once its task has ended, the rest of what the
        engine logged (the logs API keeps a followed job service's stream open for good)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        read = 0
        ended = self._end_of(ref)
        live = self.engine.service_logs(ref, follow=True)
        chunk: asyncio.Future[bytes] | None = None
        try:
            while True:
                chunk = asyncio.ensure_future(anext(live))
                await asyncio.wait({chunk, ended}, return_when=asyncio.FIRST_COMPLETED)
                if not chunk.done():
                    break
                try:
                    data = chunk.result()
                except StopAsyncIteration:
                    break
                read += len(data)
                if text := decoder.decode(data):
                    yield text
        finally:
            if chunk is not None and not chunk.done():
                chunk.cancel()
                await asyncio.wait({chunk})
            with contextlib.suppress(RuntimeError):
                await live.aclose()
        await asyncio.shield(ended)
        skip = read
        async for data in self.engine.service_logs(ref, follow=False):
            if skip >= len(data):
                skip -= len(data)
                continue
            data, skip = data[skip:], 0
            if text := decoder.decode(data):
                yield text
        if tail := decoder.decode(b"", final=True):
            yield tail

    async def wait(self, ref: str) -> int:
        task = await asyncio.shield(self._end_of(ref))
        if task is None:
            return UNKNOWN_EXIT
        if (reason := refused(task)) is not None:
            raise EngineError(reason)
        code = task_exit_code(task)
        if code is None:
            code = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ExitCode")
        return int(code) if code is not None else UNKNOWN_EXIT

    def _end_of(self, ref: str) -> asyncio.Task[Mapping[str, Any] | None]:
        poll = self._ends.get(ref)
        if poll is None or (poll.done() and (poll.cancelled() or poll.exception() is not None)):
            poll = asyncio.create_task(self._poll_end(ref), name=f"swarm-end-{ref[:12]}")
            self._ends[ref] = poll
        return poll

    async def _poll_end(self, ref: str) -> Mapping[str, Any] | None:
        """The run's task once it has ended (None: its record went first): polled often for
        its first seconds, then more slowly the longer it runs, and often again once it is
        being stopped."""
        delay = POLL_FIRST_SECONDS
        loop = asyncio.get_running_loop()
        began = loop.time()
        rejected_at: float | None = None
        hurry = self._hurry.setdefault(ref, asyncio.Event())
        while True:
            task = run_task(await self.engine.service_tasks(ref))
            if task is not None:
                self._last_task[ref] = task
                state = task_state(task)
                if state != "rejected":
                    rejected_at = None
                elif rejected_at is None:
                    rejected_at = loop.time()
                # A rejected task is final once it stays the newest for a while: a task a
                # node turned down (it lacked the memory at that moment) gets a replacement.
                if state in ENDED_STATES and (
                    rejected_at is None or loop.time() - rejected_at >= REJECTED_FINAL_SECONDS
                ):
                    return task
            else:
                service = await self.engine.inspect_service(ref)
                if service is None:
                    raise ContainerGone(f"service {ref[:12]} is gone")
                if retired(service.get("Spec") or {}) and ref in self._last_task:
                    return self._last_task[ref]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await hurry.wait()
            if hurry.is_set() or loop.time() - began < POLL_FAST_FOR_SECONDS:
                delay = POLL_FIRST_SECONDS
            else:
                delay = min(delay * 1.5, POLL_MAX_SECONDS)

    # stopping and removing -------------------------------------------------------------------

    async def stop(self, ref: str, grace_seconds: int) -> None:
        """SIGTERM, then SIGKILL after the service's stop grace period (set at its creation
        from TASKDASH_STOP_GRACE_SECONDS, the value RunManager passes as `grace_seconds`)."""
        await self._retire(ref)

    async def kill(self, ref: str) -> None:
        """The same as stop: a task's end is the swarm's to carry out, on its node (its
        SIGKILL comes after the grace period)."""
        await self._retire(ref)

    async def _retire(self, ref: str) -> None:
        self._hurry.setdefault(ref, asyncio.Event()).set()
        for attempt in range(3):
            service = await self.engine.inspect_service(ref)
            if service is None or retired(service["Spec"]):
                return
            spec = service["Spec"]
            template = spec["TaskTemplate"]
            placement = template.setdefault("Placement", {})
            placement["Constraints"] = [*(placement.get("Constraints") or []), RETIRED]
            template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
            try:
                await self.engine.update_service(ref, int(service["Version"]["Index"]), spec)
                return
            except EngineUnavailable:
                raise
            except EngineError:
                if attempt == 2:  # updated meanwhile by someone else: read it again
                    raise

    async def remove(self, ref: str) -> None:
        """The service (retired first, so its task's container goes too), its config and its
        network; or an orphan config or network by id."""
        service = await self.engine.inspect_service(ref)
        if service is None:
            if ref.startswith("taskdash-"):
                await self._remove_side(ref)
            elif not await self.engine.remove_config(ref):
                await self.engine.remove_network(ref)
            return
        service_id = str(service["ID"])
        tasks = await self.engine.service_tasks(service_id)
        if live_tasks(tasks):
            await self._retire(service_id)
            await self._retired_tasks_let_go(service_id)
        for task in tasks:
            if task_state(task) in ENDED_STATES and (container_id := container_of(task)):
                # An ended task's container stays on its node (moby/moby#44312): removed
                # here when that node is this engine's; elsewhere it stays until pruned.
                await self.engine.remove(container_id)
        await self.engine.remove_service(service_id)
        for cache in (self._ends, self._hurry, self._last_task):
            cache.pop(service_id, None)
            cache.pop(ref, None)
        await self._remove_side(str(service["Spec"]["Name"]))

    async def _retired_tasks_let_go(self, service_id: str) -> None:
        """Wait (a little) until the swarm has marked the run's live tasks for removal: a job
        service removed before its update was handled keeps its tasks, running."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RETIRE_SECONDS):
                while True:
                    tasks = live_tasks(await self.engine.service_tasks(service_id))
                    if all(task.get("DesiredState") == "remove" for task in tasks):
                        return
                    await asyncio.sleep(POLL_FIRST_SECONDS)
        log.warning("the swarm did not let go of service %s's tasks in time", service_id[:12])

    async def _remove_side(self, name: str) -> None:
        await self.engine.remove_config(name)
        if self.settings.run_network == "none":
            try:
                await self.engine.remove_network(name)
            except EngineUnavailable:
                raise
            except EngineError as exc:  # still in use: the next reconciliation removes it
                log.warning("cannot remove network %s yet: %s", name, exc.message)

    # what there is ---------------------------------------------------------------------------

    async def inspect(self, ref: str) -> dict[str, Any] | None:
        service = await self.engine.inspect_service(ref)
        if service is None:
            return None
        service_id = str(service["ID"])
        task = run_task(await self.engine.service_tasks(service_id))
        task = task or self._last_task.get(service_id)
        container = None
        if container_id := container_of(task):  # on this engine when its node is this one
            container = await self.engine.inspect(container_id)
        return inspect_view(service, task, container)

    async def list_labelled(self, labels: Mapping[str, str]) -> list[ContainerSummary]:
        """What reconcile lists: this engine's own labelled containers (requirements builds;
        not the swarm's task containers), the run services (a run's "container", its state
        its task's), and configs and networks whose service is gone."""
        found = [
            c
            for c in await self.engine.local_containers(labels)
            if SWARM_TASK_LABEL not in c.labels
        ]
        with_service: set[str] = set()
        for service in await self.engine.list_services(labels):
            service_id = str(service["ID"])
            service_labels = dict((service.get("Spec") or {}).get("Labels") or {})
            with_service.add(service_labels.get(f"{LABEL_PREFIX}run_id", ""))
            task = run_task(await self.engine.service_tasks(service_id))
            found.append(ContainerSummary(service_id, service_labels, task_state(task)))
        sides = [("config", c) for c in await self.engine.list_configs(labels)]
        if self.settings.run_network == "none":
            sides += [("network", n) for n in await self.engine.list_networks(labels)]
        for kind, item in sides:
            item_labels = dict((item.get("Spec") or item).get("Labels") or {})
            if item_labels.get(f"{LABEL_PREFIX}run_id", "") not in with_service:
                found.append(ContainerSummary(str(item.get("ID") or item["Id"]), item_labels, kind))
        return found


class SwarmEngine(DockerEngine):
    """The swarm manager's engine as RunManager and the reconciliation see it: a run's
    container is its service (a swarm id), requirements builds are containers here (a
    container id), and each call goes to the one its id names."""

    def __init__(
        self,
        settings: Settings,
        url: str | None = None,
        *,
        call_timeout: aiohttp.ClientTimeout = CALL_TIMEOUT,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(url, call_timeout=call_timeout, tls=tls)
        self.runs = SwarmExecutor(self, settings)

    async def close(self) -> None:
        await self.runs.close()
        await super().close()

    async def stop(self, container_id: str, grace_seconds: int) -> None:
        if is_container_id(container_id):
            await super().stop(container_id, grace_seconds)
        else:
            await self.runs.stop(container_id, grace_seconds)

    async def kill(self, container_id: str) -> None:
        if is_container_id(container_id):
            await super().kill(container_id)
        else:
            await self.runs.kill(container_id)

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        if is_container_id(container_id):
            return await super().inspect(container_id)
        return await self.runs.inspect(container_id)

    async def remove(self, container_id: str) -> None:
        if is_container_id(container_id):
            await super().remove(container_id)
        else:
            await self.runs.remove(container_id)

    async def list_labelled(self, labels: Mapping[str, str]) -> list[ContainerSummary]:
        return await self.runs.list_labelled(labels)

    async def local_containers(self, labels: Mapping[str, str]) -> list[ContainerSummary]:
        return await super().list_labelled(labels)


def run_executor(engine: DockerEngine) -> RunExecutor:
    """The executor of the engine the app opened (services.py picks it from the settings)."""
    return engine.runs if isinstance(engine, SwarmEngine) else DockerExecutor(engine)
