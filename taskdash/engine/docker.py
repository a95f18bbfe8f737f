"""The only module that talks to the Docker engine (through aiodocker)."""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from taskdash.core.errors import EngineError, NotFound

LABEL_PREFIX = "taskdash."
JOB_DIR = "/job"


class ImageNotFound(NotFound):
    code = "image_not_found"


class ContainerGone(NotFound):
    code = "container_gone"


@dataclass(frozen=True)
class BindMount:
    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one container; `container_config` turns it into API JSON."""

    image: str
    command: Sequence[str]
    labels: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = "1000:1000"
    network: str = "none"
    memory_bytes: int = 512 * 1024 * 1024
    nano_cpus: int = 1_000_000_000
    pids_limit: int = 256
    tmpfs_mb: int = 64
    read_only_root: bool = True
    job_volume: bool = True
    binds: Sequence[BindMount] = ()
    cap_add: Sequence[str] = ()
    log_max_bytes: int = 20 * 1024 * 1024
    working_dir: str = "/tmp"


def container_config(spec: ContainerSpec) -> dict[str, Any]:
    """Pure: the Engine API body for a hardened container built from `spec`."""
    host_config: dict[str, Any] = {
        "NetworkMode": spec.network,
        "ReadonlyRootfs": spec.read_only_root,
        "CapDrop": ["ALL"],
        "CapAdd": list(spec.cap_add),
        "SecurityOpt": ["no-new-privileges"],
        "Memory": spec.memory_bytes,
        "MemorySwap": spec.memory_bytes,
        "NanoCpus": spec.nano_cpus,
        "PidsLimit": spec.pids_limit,
        "Tmpfs": (
            {"/tmp": f"rw,nosuid,nodev,size={spec.tmpfs_mb}m,mode=1777"} if spec.tmpfs_mb else {}
        ),
        "LogConfig": {
            "Type": "json-file",
            "Config": {"max-size": str(spec.log_max_bytes), "max-file": "1"},
        },
        "Binds": [f"{b.source}:{b.target}:{'ro' if b.read_only else 'rw'}" for b in spec.binds],
        "Init": True,
    }
    config: dict[str, Any] = {
        "Image": spec.image,
        "Cmd": list(spec.command),
        "Labels": dict(spec.labels),
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "User": spec.user,
        "WorkingDir": spec.working_dir,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "NetworkDisabled": spec.network == "none",
        "HostConfig": host_config,
    }
    if spec.job_volume:
        config["Volumes"] = {JOB_DIR: {}}
    return config


def tar_single_file(name: str, content: bytes, *, uid: int, gid: int, mode: int) -> bytes:
    """An uncompressed tar holding one file, owned by the task's user."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.uid, info.gid, info.mode = uid, gid, mode
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _engine_error(exc: DockerError, doing: str) -> EngineError:
    message = exc.message if isinstance(exc.message, str) else str(exc)
    return EngineError(f"Docker engine refused to {doing}: {message}")


@dataclass(frozen=True)
class ContainerSummary:
    id: str
    labels: dict[str, str]
    state: str


class DockerRunner:
    """Thin async facade over the engine; every engine failure becomes a TaskdashError."""

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
            raise RuntimeError("DockerRunner is not open")
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
