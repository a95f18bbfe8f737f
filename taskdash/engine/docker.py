"""The only module that talks to the Docker engine (through aiodocker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from taskdash.core.errors import EngineError, NotFound
from taskdash.engine.spec import ContainerSpec, container_config


class ImageNotFound(NotFound):
    code = "image_not_found"


class ContainerGone(NotFound):
    code = "container_gone"


def _engine_error(exc: DockerError, doing: str) -> EngineError:
    message = exc.message if isinstance(exc.message, str) else str(exc)
    return EngineError(f"Docker engine refused to {doing}: {message}")


@dataclass(frozen=True)
class ContainerSummary:
    id: str
    labels: dict[str, str]
    state: str


class DockerEngine:
    """The Docker engine's client: a thin async facade where every engine failure becomes a
    TaskdashError."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._docker: aiodocker.Docker | None = None

    async def open(self) -> None:
        self._docker = aiodocker.Docker(url=self._url)

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
        """The engine's version string; raises EngineError when it does not answer."""
        try:
            version = await asyncio.wait_for(self.docker.version(), timeout=5)
        except (DockerError, OSError, TimeoutError) as exc:
            raise EngineError(f"Docker engine does not answer: {exc}", status=503) from None
        return str(version.get("Version", "unknown"))

    async def image_info(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.docker.images.inspect(name)
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise _engine_error(exc, f"inspect image {name}") from None

    async def create(self, spec: ContainerSpec, name: str | None = None) -> str:
        try:
            container = await self.docker.containers.create(container_config(spec), name=name)
        except DockerError as exc:
            if exc.status == 404:
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
        except DockerError as exc:
            raise _engine_error(exc, f"copy the script into {directory}") from None

    async def start(self, container_id: str) -> None:
        try:
            await self.docker.containers.container(container_id).start()
        except DockerError as exc:
            raise _engine_error(exc, "start the container") from None

    async def follow_output(self, container_id: str) -> AsyncIterator[str]:
        """Stdout and stderr as the engine interleaves them, from the container's first byte."""
        container = self.docker.containers.container(container_id)
        try:
            async for chunk in container.log(stdout=True, stderr=True, follow=True):
                yield chunk
        except DockerError as exc:
            if exc.status == 404:
                raise ContainerGone(f"container {container_id[:12]} is gone") from None
            raise _engine_error(exc, "read the container's output") from None

    async def wait(self, container_id: str) -> int:
        try:
            result = await self.docker.containers.container(container_id).wait()
        except DockerError as exc:
            if exc.status == 404:
                raise ContainerGone(f"container {container_id[:12]} is gone") from None
            raise _engine_error(exc, "wait for the container") from None
        return int(result.get("StatusCode", -1))

    async def stop(self, container_id: str, grace_seconds: int) -> None:
        try:
            await self.docker.containers.container(container_id).stop(t=grace_seconds)
        except DockerError as exc:
            if exc.status not in (304, 404):
                raise _engine_error(exc, "stop the container") from None

    async def kill(self, container_id: str) -> None:
        try:
            await self.docker.containers.container(container_id).kill()
        except DockerError as exc:
            if exc.status not in (404, 409):
                raise _engine_error(exc, "kill the container") from None

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            return await self.docker.containers.container(container_id).show()
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise _engine_error(exc, "inspect the container") from None

    async def remove(self, container_id: str) -> None:
        try:
            await self.docker.containers.container(container_id).delete(force=True, v=True)
        except DockerError as exc:
            if exc.status not in (404, 409):
                raise _engine_error(exc, "remove the container") from None

    async def commit(
        self, container_id: str, repository: str, tag: str, changes: list[str]
    ) -> None:
        try:
            await self.docker.containers.container(container_id).commit(
                repository=repository, tag=tag, changes=changes, pause=False
            )
        except DockerError as exc:
            raise _engine_error(exc, "save the requirements image") from None

    async def list_labelled(self, labels: Mapping[str, str]) -> list[ContainerSummary]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        try:
            found = await self.docker.containers.list(all=True, filters=filters)
        except DockerError as exc:
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
        except DockerError as exc:
            if exc.status == 404:
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
        except DockerError as exc:
            raise _engine_error(exc, "save the requirements image") from None

    async def network_info(self, name: str) -> dict[str, Any] | None:
        try:
            network = await self.docker.networks.get(name)
            return await network.show()
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise _engine_error(exc, f"inspect network {name}") from None

    async def create_network(self, config: Mapping[str, Any]) -> bool:
        """Create a network; False when one of that name already exists."""
        try:
            await self.docker.networks.create(dict(config))
        except DockerError as exc:
            if exc.status == 409:
                return False
            raise _engine_error(exc, f"create network {config.get('Name')}") from None
        return True
