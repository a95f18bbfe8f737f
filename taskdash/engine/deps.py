"""Python requirements, installed once per (base image, requirements) into a cached image."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from taskdash.core.config import Settings
from taskdash.core.errors import TaskdashError
from taskdash.engine.build_spec import DEPS_DIR, DEPS_REPOSITORY, build_spec, requirements_key
from taskdash.engine.docker import DockerEngine
from taskdash.engine.spec import JOB_DIR, tar_single_file
from taskdash.logs.lines import split_lines


class BuildFailed(TaskdashError):
    code = "requirements_build_failed"

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DepsBuilder:
    def __init__(self, settings: Settings, engine: DockerEngine) -> None:
        self.settings = settings
        self.engine = engine
        self._locks: dict[str, asyncio.Lock] = {}

    async def image_for(
        self,
        base_image: str,
        requirements: str,
        *,
        labels: Mapping[str, str],
        write: Callable[[list[str]], None],
        on_container: Callable[[str], None],
    ) -> str:
        """The tag of an image with `requirements` installed in /deps, building it if needed."""
        base = await self.engine.image_info(base_image)
        if base is None:
            # Let container creation report the missing image in its usual words.
            return base_image
        key = requirements_key(str(base["Id"]), requirements)
        tag = f"{DEPS_REPOSITORY}:{key}"
        async with self._locks.setdefault(key, asyncio.Lock()):
            if await self.engine.image_info(tag) is not None:
                write([f"[taskdash] requirements: reusing cached environment {tag}"])
                return tag
            write([f"[taskdash] requirements: installing into {tag}"])
            await self._build(base_image, requirements, tag, labels, write, on_container)
            write(["[taskdash] requirements: installed"])
        return tag

    async def _build(
        self,
        base_image: str,
        requirements: str,
        tag: str,
        labels: Mapping[str, str],
        write: Callable[[list[str]], None],
        on_container: Callable[[str], None],
    ) -> None:
        spec = build_spec(self.settings, image=base_image, labels=labels)
        container_id = await self.engine.create(spec)
        on_container(container_id)
        try:
            archive = tar_single_file(
                "requirements.txt", requirements.encode(), uid=0, gid=0, mode=0o644
            )
            await self.engine.put_file(container_id, JOB_DIR, archive)
            await self.engine.start(container_id)
            try:
                exit_code = await asyncio.wait_for(
                    self._stream_until_exit(container_id, write),
                    self.settings.build_timeout_seconds,
                )
            except TimeoutError:
                await self.engine.kill(container_id)
                write(["[taskdash] requirements: installing timed out"])
                raise BuildFailed("installing requirements timed out", exit_code=-1) from None
            if exit_code != 0:
                write([f"[taskdash] requirements: pip failed with exit code {exit_code}"])
                raise BuildFailed("installing requirements failed", exit_code=exit_code)
            repository, _, key = tag.partition(":")
            await self.engine.commit(
                container_id,
                repository,
                key,
                changes=[
                    f"ENV PYTHONPATH={DEPS_DIR}",
                    f"USER {self.settings.run_user}",
                ],
            )
        finally:
            await self.engine.remove(container_id)

    async def _stream_until_exit(
        self, container_id: str, write: Callable[[list[str]], None]
    ) -> int:
        pending = ""
        async for chunk in self.engine.follow_output(container_id):
            lines, pending = split_lines(pending, chunk)
            write(lines)
        if pending:
            write([pending])
        return await self.engine.wait(container_id)
