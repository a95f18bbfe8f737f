"""The only module that talks to the Docker engine (through aiodocker).

Every failure becomes a TaskdashError: a refusal an EngineError (with the engine's words), and
every way of not answering (no socket, a connection refused or lost mid-answer, no answer in
time) one EngineUnavailable, which the runs wait out (see engine/watch.py).
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import json
import re
import ssl
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError
from aiodocker.stream import Stream

from taskdash.core.errors import EngineError, NotFound
from taskdash.engine.spec import ContainerSpec, container_config


class ImageNotFound(NotFound):
    code = "image_not_found"


class ContainerGone(NotFound):
    code = "container_gone"


class EngineUnavailable(EngineError):
    """The engine does not answer: no connection, a connection lost, or no answer in time."""

    status = 503
    code = "engine_unavailable"


# What a call to the engine can raise. aiodocker turns a refused connection into DockerError
# 900; a connection lost mid-answer arrives as aiohttp's own errors (ServerDisconnectedError,
# ClientOSError, ClientPayloadError...), and a timeout as TimeoutError.
ENGINE_FAILURES = (DockerError, aiohttp.ClientError, OSError, TimeoutError)
NO_CONNECTION = 900

# aiodocker 0.27 gives its session `aiohttp.ClientTimeout()` (no limit at all, not aiohttp's
# default total=300 s) unless told otherwise, and runs logs, wait, attach, stop, kill, delete
# and commit with the session's timeout minus total and sock_read. So short calls (inspect,
# create, start, copy, list, version) get a limit here, and a hung engine reads as unavailable
# instead of holding a run or a page forever; the long polls are given LONG_POLL explicitly
# (no total, no read limit: a container may be silent for hours), and kill, stop and delete
# a limit of their own.
CALL_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
LONG_POLL = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=10)
PING_SECONDS = 5.0


@dataclass(frozen=True)
class TlsFiles:
    """A client certificate for an engine that listens on TCP with TLS (`dockerd --tlsverify`):
    the CA that signed the engine's certificate, and this client's certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        context.load_cert_chain(certfile=str(self.cert), keyfile=str(self.key))
        return context


TCP_SCHEME = re.compile(r"^(tcp|http|https)://")


def engine_url(url: str | None, tls: TlsFiles | None) -> str | None:
    """The URL aiodocker is given: with TLS, `tcp://host:2376` becomes `https://host:2376`
    (aiodocker only rewrites it itself for DOCKER_TLS_VERIFY)."""
    if tls is None or url is None:
        return url
    return TCP_SCHEME.sub("https://", url)


def _status(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, DockerError) else None


def _engine_error(exc: BaseException, doing: str) -> EngineError:
    if isinstance(exc, DockerError) and exc.status != NO_CONNECTION:
        message = exc.message if isinstance(exc.message, str) else str(exc)
        return EngineError(f"Docker engine refused to {doing}: {message}")
    return EngineUnavailable(
        f"the Docker engine does not answer (trying to {doing}: {type(exc).__name__})"
    )


def _gone(container_id: str) -> ContainerGone:
    return ContainerGone(f"container {container_id[:12]} is gone")


@dataclass(frozen=True)
class ContainerSummary:
    id: str
    labels: dict[str, str]
    state: str


class Attachment:
    """A container's stdout and stderr through `POST /containers/{id}/attach`, made before
    the container starts: it has every byte from the first, and while this reader is behind,
    the engine holds the container's writes instead of dropping what the json-file log rotates
    away."""

    def __init__(self, stream: Stream, container_id: str) -> None:
        self._stream = stream
        self._container_id = container_id

    async def chunks(self) -> AsyncIterator[str]:
        """The output as it comes, until the container's streams close."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                message = await self._stream.read_out()
            except ENGINE_FAILURES as exc:
                raise _engine_error(exc, "read the container's output") from None
            if message is None:
                break
            if text := decoder.decode(message.data):
                yield text
        if tail := decoder.decode(b"", final=True):
            yield tail

    async def close(self) -> None:
        with contextlib.suppress(*ENGINE_FAILURES, RuntimeError):
            await self._stream.close()


class DockerEngine:
    """The Docker engine's client: a thin async facade where every engine failure becomes a
    TaskdashError."""

    def __init__(
        self,
        url: str | None = None,
        *,
        call_timeout: aiohttp.ClientTimeout = CALL_TIMEOUT,
        tls: TlsFiles | None = None,
    ) -> None:
        if tls is not None and (url is None or not TCP_SCHEME.match(url)):
            raise ValueError("TLS files need a tcp:// or https:// engine URL")
        self._url = engine_url(url, tls)
        self._tls = tls
        self._call_timeout = call_timeout
        self._docker: aiodocker.Docker | None = None

    async def open(self) -> None:
        ssl_context = self._tls.context() if self._tls is not None else None
        self._docker = aiodocker.Docker(
            url=self._url, timeout=self._call_timeout, ssl_context=ssl_context
        )

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            raise RuntimeError("DockerEngine is not open")
        return self._docker

    async def ping(self) -> str:
        """The engine's version string; raises EngineUnavailable when it does not answer."""
        try:
            async with asyncio.timeout(PING_SECONDS):
                version = await self.docker.version()
        except ENGINE_FAILURES as exc:
            raise EngineUnavailable(
                f"Docker engine does not answer: {exc or type(exc).__name__}"
            ) from None
        return str(version.get("Version", "unknown"))

    async def image_info(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.docker.images.inspect(name)
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                return None
            raise _engine_error(exc, f"inspect image {name}") from None

    async def create(self, spec: ContainerSpec, name: str | None = None) -> str:
        try:
            container = await self.docker.containers.create(container_config(spec), name=name)
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                raise ImageNotFound(
                    f"image {spec.image!r} is not on the Docker engine: build the default images "
                    "with `make images`, or name an image that exists"
                ) from None
            raise _engine_error(exc, "create the container") from None
        return str(container.id)

    async def put_file(self, container_id: str, directory: str, archive: bytes) -> None:
        try:
            container = self.docker.containers.container(container_id)
            await container.put_archive(directory, archive)  # type: ignore[no-untyped-call]
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, f"copy the script into {directory}") from None

    async def start(self, container_id: str) -> None:
        try:
            await self.docker.containers.container(container_id).start()
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "start the container") from None

    async def attach(self, container_id: str) -> Attachment:
        """Attach to a created container's output; start it after this returns."""
        container = self.docker.containers.container(container_id)
        stream = container.attach(stdout=True, stderr=True, timeout=LONG_POLL)
        try:
            await stream.__aenter__()
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                raise _gone(container_id) from None
            raise _engine_error(exc, "attach to the container") from None
        return Attachment(stream, container_id)

    async def follow_output(self, container_id: str) -> AsyncIterator[str]:
        """Stdout and stderr through the logs API, from what the engine's json-file log holds:
        for re-attaching to a container that was started earlier. Ends when the container does,
        or silently when the connection is lost (aiodocker ends the stream then): the container's
        `wait` tells which."""
        container = self.docker.containers.container(container_id)
        try:
            async for chunk in container.log(
                stdout=True, stderr=True, follow=True, timeout=LONG_POLL
            ):
                yield chunk
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                raise _gone(container_id) from None
            raise _engine_error(exc, "read the container's output") from None

    async def wait(self, container_id: str) -> int:
        """The container's exit code, once it is not running: a long poll with no time limit."""
        try:
            result = await self.docker.containers.container(container_id).wait(timeout=LONG_POLL)
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                raise _gone(container_id) from None
            raise _engine_error(exc, "wait for the container") from None
        return int(result.get("StatusCode", -1))

    async def stop(self, container_id: str, grace_seconds: int) -> None:
        limit = aiohttp.ClientTimeout(
            total=grace_seconds + (self._call_timeout.total or 60),
            sock_connect=self._call_timeout.sock_connect,
        )
        try:
            await self.docker.containers.container(container_id).stop(
                t=grace_seconds, timeout=limit
            )
        except ENGINE_FAILURES as exc:
            if _status(exc) not in (304, 404):
                raise _engine_error(exc, "stop the container") from None

    async def kill(self, container_id: str) -> None:
        try:
            await self.docker.containers.container(container_id).kill(timeout=self._call_timeout)
        except ENGINE_FAILURES as exc:
            if _status(exc) not in (404, 409):
                raise _engine_error(exc, "kill the container") from None

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect data (by id or name); None when there is no such container."""
        try:
            return await self.docker.containers.container(container_id).show()
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                return None
            raise _engine_error(exc, "inspect the container") from None

    async def remove(self, container_id: str) -> None:
        try:
            await self.docker.containers.container(container_id).delete(
                force=True, v=True, timeout=self._call_timeout
            )
        except ENGINE_FAILURES as exc:
            if _status(exc) not in (404, 409):
                raise _engine_error(exc, "remove the container") from None

    async def commit(
        self, container_id: str, repository: str, tag: str, changes: list[str]
    ) -> None:
        try:
            await self.docker.containers.container(container_id).commit(
                repository=repository, tag=tag, changes=changes, pause=False
            )
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "save the requirements image") from None

    async def list_labelled(self, labels: Mapping[str, str]) -> list[ContainerSummary]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        try:
            found = await self.docker.containers.list(all=True, filters=filters)
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "list containers") from None
        return [
            ContainerSummary(id=str(c.id), labels=dict(c["Labels"] or {}), state=str(c["State"]))
            for c in found
        ]

    # requirements builds ---

    async def container_size(self, container_id: str) -> int | None:
        """Bytes the container wrote into its own layer (SizeRw: what a commit would keep;
        not its tmpfs or volumes); None when it is gone. The engine walks the layer's files
        to answer, so the cost grows with what was written."""
        try:
            info = await self.docker.containers.container(container_id).show(size=True)
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                return None
            raise _engine_error(exc, "measure the container") from None
        return int(info.get("SizeRw") or 0)

    async def commit_image(
        self,
        container_id: str,
        repository: str,
        tag: str,
        *,
        config: Mapping[str, Any],
        comment: str,
    ) -> None:
        """Commit with `config` as the image's config instead of the container's (the engine
        fills only the fields `config` leaves empty from the container's)."""
        try:
            await self.docker.containers.container(container_id).commit(
                repository=repository, tag=tag, config=dict(config), message=comment, pause=False
            )
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "save the requirements image") from None

    async def list_images(self, repository: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The engine's summaries (`GET /images/json`) of `repository`'s images with `labels`."""
        filters = {
            "reference": [repository],
            "label": [f"{key}={value}" for key, value in labels.items()],
        }
        try:
            found = await self.docker.images.list(filters=filters)
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, f"list the images of {repository}") from None
        return [dict(summary) for summary in found]

    async def remove_image(self, name: str) -> bool:
        """Remove an image (not forced); False when it is gone already or a container uses it."""
        try:
            await self.docker.images.delete(name)
        except ENGINE_FAILURES as exc:
            if _status(exc) in (404, 409):
                return False
            raise _engine_error(exc, f"remove image {name}") from None
        return True

    async def network_info(self, name: str) -> dict[str, Any] | None:
        try:
            network = await self.docker.networks.get(name)
            return await network.show()
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                return None
            raise _engine_error(exc, f"inspect network {name}") from None

    async def create_network(self, config: Mapping[str, Any]) -> bool:
        """Create a network; False when one of that name already exists."""
        try:
            await self.docker.networks.create(dict(config))
        except ENGINE_FAILURES as exc:
            if _status(exc) == 409:
                return False
            raise _engine_error(exc, f"create network {config.get('Name')}") from None
        return True

    # Swarm: services, their tasks, configs (engine/swarm.py drives these) ---

    async def swarm_node(self) -> tuple[str, bool]:
        """This engine's node id in its swarm, and whether it is a manager; ("", False)
        when the engine is not in a swarm."""
        try:
            info = await self.docker.system.info()
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "read the engine's swarm state") from None
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            return "", False
        return str(swarm.get("NodeID") or ""), bool(swarm.get("ControlAvailable"))

    async def create_service(self, spec: Mapping[str, Any]) -> str:
        """`POST /services/create` with an Engine API ServiceSpec; the new service's id."""
        task_template = dict(spec["TaskTemplate"])
        container_spec = dict(task_template["ContainerSpec"])
        # aiodocker takes the env as a mapping and writes the API's list itself.
        container_spec["Env"] = dict(
            entry.partition("=")[::2] for entry in container_spec.get("Env") or []
        )
        task_template["ContainerSpec"] = container_spec
        try:
            created = await self.docker.services.create(
                task_template,
                name=spec.get("Name"),
                labels=spec.get("Labels"),
                mode=spec.get("Mode"),
                endpoint_spec=spec.get("EndpointSpec"),
            )
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "create the service") from None
        return str(created["ID"])

    async def inspect_service(self, service: str) -> dict[str, Any] | None:
        """A service's inspect data, by id or name; None when there is no such service."""
        try:
            return dict(await self.docker.services.inspect(service))
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                return None
            raise _engine_error(exc, "inspect the service") from None

    async def update_service(self, service: str, version: int, spec: Mapping[str, Any]) -> None:
        """`POST /services/{id}/update` with a whole ServiceSpec, at the version it was read."""
        try:
            await self.docker._query_json(
                f"services/{service}/update",
                method="POST",
                params={"version": str(version)},
                data=json.dumps(spec),
            )
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "update the service") from None

    async def remove_service(self, service: str) -> bool:
        """Remove a service; False when it was gone already. (On Engine 20.10 a job service's
        task outlives it: see engine/swarm.py.)"""
        try:
            await self.docker.services.delete(service)
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                return False
            raise _engine_error(exc, "remove the service") from None
        return True

    async def list_services(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        try:
            found = await self.docker.services.list(filters={"label": _label_filter(labels)})
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "list services") from None
        return [dict(service) for service in found]

    async def service_tasks(self, service: str) -> list[dict[str, Any]]:
        """`GET /tasks?filters=service=...`: the service's tasks, with their state."""
        try:
            found = await self.docker.tasks.list(filters={"service": service})
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "list the service's tasks") from None
        return [dict(task) for task in found]

    async def service_logs(self, service: str, *, follow: bool) -> AsyncGenerator[bytes]:
        """`GET /services/{id}/logs` (stdout and stderr, from the start), as the bytes of each
        frame. With `follow` it does not end by itself when the service's task does: the
        engine keeps it open for tasks to come."""
        params = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0", "tail": "all"}
        query = self.docker._query(f"services/{service}/logs", params=params, timeout=LONG_POLL)
        try:
            async with query as response:
                while True:
                    try:
                        header = await response.content.readexactly(8)
                    except asyncio.IncompleteReadError:
                        return
                    _, length = struct.unpack(">BxxxL", header)
                    if length:
                        yield await response.content.readexactly(length)
        except (*ENGINE_FAILURES, asyncio.IncompleteReadError) as exc:
            if _status(exc) == 404:
                raise ContainerGone(f"service {service[:12]} is gone") from None
            raise _engine_error(exc, "read the service's output") from None

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        """`POST /configs/create`: a swarm config holding `data`; its id."""
        encoded = base64.b64encode(data).decode()
        try:
            created = await self.docker.configs.create(name, encoded, b64=True, labels=labels)
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, f"create config {name}") from None
        return str(created["ID"])

    async def remove_config(self, config: str) -> bool:
        """False when it is gone already."""
        try:
            await self.docker.configs.delete(config)
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                return False
            raise _engine_error(exc, f"remove config {config}") from None
        return True

    async def list_configs(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        try:
            found = await self.docker.configs.list(filters={"label": _label_filter(labels)})
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "list configs") from None
        return [dict(config) for config in found]

    async def list_networks(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        try:
            found = await self.docker.networks.list(filters={"label": _label_filter(labels)})
        except ENGINE_FAILURES as exc:
            raise _engine_error(exc, "list networks") from None
        return [dict(network) for network in found]

    async def remove_network(self, network: str) -> bool:
        """False when it is gone already."""
        try:
            await (await self.docker.networks.get(network)).delete()
        except ENGINE_FAILURES as exc:
            if _status(exc) == 404:
                return False
            raise _engine_error(exc, f"remove network {network}") from None
        return True


def _label_filter(labels: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]
