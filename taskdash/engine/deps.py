"""Python requirements, installed once per (base image, requirements) into a cached image."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from taskdash.core.config import MIB, Settings
from taskdash.core.errors import TaskdashError
from taskdash.core.failpoints import hit
from taskdash.engine.build_network import BuildNetwork
from taskdash.engine.build_spec import (
    DEPS_REPOSITORY,
    build_archive,
    build_spec,
    deps_image_config,
    readable_by,
    requirements_key,
)
from taskdash.engine.docker import DockerEngine
from taskdash.engine.spec import declared_volumes
from taskdash.logs.lines import split_lines

# How often the build's size is measured while it runs: every second, or five times as long
# as the engine took to measure it, whichever is longer. The engine walks the layer's files to
# answer (about 0.1 s for 30,000 files here), so measuring never takes more than a fifth of its
# time, and a build writing past the cap is stopped within about a second's worth of writes.
# A burst in the last second before pip exits is caught by the check before the commit.
SIZE_POLL_SECONDS = 1.0
SIZE_POLL_COST_FACTOR = 5


class BuildFailed(TaskdashError):
    code = "requirements_build_failed"

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DepsBuilder:
    def __init__(self, settings: Settings, engine: DockerEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.network = BuildNetwork(settings, engine)
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
            await self._build(base_image, base, requirements, key, labels, write, on_container)
            write(["[taskdash] requirements: installed"])
        return tag

    async def _build(
        self,
        base_image: str,
        base: Mapping[str, Any],
        requirements: str,
        key: str,
        labels: Mapping[str, str],
        write: Callable[[list[str]], None],
        on_container: Callable[[str], None],
    ) -> None:
        unreadable = self._unreadable_mounts()
        if unreadable:
            write([f"[taskdash] requirements: {problem}" for problem in unreadable])
            raise BuildFailed("installing requirements failed", exit_code=-1)
        await self.network.prepare()
        spec = build_spec(
            self.settings, image=base_image, labels=labels, image_volumes=declared_volumes(base)
        )
        container_id = await self.engine.create(spec)
        on_container(container_id)
        try:
            # Into "/" of the created container: the engine then makes /deps and /job the run
            # user's even when the image has them owned by root, or has none.
            await self.engine.put_file(
                container_id, "/", build_archive(self.settings, requirements)
            )
            await self.engine.start(container_id)
            hit("build.running")
            exit_code = await self._follow(container_id, write)
            await self._check_size(container_id, write)
            if exit_code != 0:
                write([f"[taskdash] requirements: pip failed with exit code {exit_code}"])
                raise BuildFailed("installing requirements failed", exit_code=exit_code)
            await self.engine.commit_image(
                container_id,
                DEPS_REPOSITORY,
                key,
                config=deps_image_config(base.get("Config") or {}, self.settings),
                comment=f"taskdash requirements {key}",
            )
        finally:
            await self.engine.remove(container_id)

    def _unreadable_mounts(self) -> list[str]:
        """Host files the build mounts that its user cannot read (it has no capabilities)."""
        user = self.settings.run_user
        found = []
        for variable, path in (
            ("TASKDASH_PIP_FIND_LINKS", self.settings.pip_find_links),
            ("TASKDASH_PIP_CA_BUNDLE", self.settings.pip_ca_bundle),
        ):
            if path is None:
                continue
            try:
                info = path.stat()
            except OSError as exc:
                found.append(f"{variable}={path}: {exc.strerror}")
                continue
            if not readable_by(user, info.st_mode, info.st_uid, info.st_gid):
                found.append(
                    f"{variable}={path} is not readable by the build's user {user} "
                    f"(TASKDASH_RUN_USER); make it readable, e.g. chmod o+rX {path}"
                )
        return found

    async def _follow(self, container_id: str, write: Callable[[list[str]], None]) -> int:
        """pip's exit code, once its output is written; the build is killed when it runs
        past TASKDASH_BUILD_TIMEOUT_SECONDS or writes past TASKDASH_BUILD_MAX_MB."""
        watcher = asyncio.create_task(self._kill_when_too_big(container_id))
        try:
            async with asyncio.timeout(self.settings.build_timeout_seconds):
                return await self._stream_until_exit(container_id, write)
        except TimeoutError:
            await self.engine.kill(container_id)
            seconds = f"{self.settings.build_timeout_seconds:g}"
            write([f"[taskdash] requirements: installing took longer than {seconds} s; stopped"])
            raise BuildFailed("installing requirements timed out", exit_code=-1) from None
        finally:
            watcher.cancel()
            await asyncio.wait([watcher])

    async def _kill_when_too_big(self, container_id: str) -> None:
        limit = self.settings.build_max_mb * MIB
        interval = SIZE_POLL_SECONDS
        while True:
            await asyncio.sleep(interval)
            started = time.monotonic()
            try:
                size = await self.engine.container_size(container_id)
                if size is None:
                    return
                if size > limit:
                    await self.engine.kill(container_id)
                    return
            except TaskdashError:
                return  # the check after the build still runs
            cost = time.monotonic() - started
            interval = max(SIZE_POLL_SECONDS, SIZE_POLL_COST_FACTOR * cost)

    async def _check_size(self, container_id: str, write: Callable[[list[str]], None]) -> None:
        size = await self.engine.container_size(container_id) or 0
        limit = self.settings.build_max_mb
        if size > limit * MIB:
            write(
                [
                    f"[taskdash] requirements: the installed files passed the {limit} MiB limit "
                    f"(TASKDASH_BUILD_MAX_MB) with {size / MIB:.0f} MiB; stopped"
                ]
            )
            raise BuildFailed("the installed requirements are too large", exit_code=-1)

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
