"""Run logs on disk: an append-only file per run under the data directory.

A line's number is its position in the run's file (1-based); it is also the SSE event id, so a
follower that replays the file and then follows the hub sees every line exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Generator
from pathlib import Path
from uuid import UUID

from taskdash.logs.hub import LogEvent, LogHub
from taskdash.logs.lines import masker

# Room kept under the cap for the line that says the log was truncated.
TRUNCATION_NOTE_BYTES = 128
REPAIR_CHUNK_BYTES = 1024 * 1024


class LogWriter:
    """Appends one run's lines to its file, capping the stored size, and announces each line."""

    def __init__(
        self, path: Path, run_id: UUID, max_bytes: int, hub: LogHub, masks: list[str]
    ) -> None:
        self.run_id = run_id
        self.path = path
        self.max_bytes = max_bytes
        self._hub = hub
        # Secret values never reach the file or a follower.
        self._mask = masker(masks)
        self.lines, self.bytes = repair_log_file(path)
        self.truncated = self.bytes >= max_bytes - TRUNCATION_NOTE_BYTES
        self._file = path.open("ab")

    def write(self, lines: list[str]) -> None:
        for raw in lines:
            if self.truncated:
                break  # still flush what this batch wrote before the cap
            line = self._mask(raw)
            data = (line + "\n").encode("utf-8", "replace")
            if self.bytes + len(data) > self.max_bytes - TRUNCATION_NOTE_BYTES:
                self.truncated = True
                line = (
                    f"[taskdash] log truncated: stored output is capped at {self.max_bytes} bytes"
                )
                data = (line + "\n").encode()
            self._file.write(data)
            self.bytes += len(data)
            self.lines += 1
            self._hub.publish(LogEvent("line", self.run_id, number=self.lines, text=line))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def repair_log_file(path: Path) -> tuple[int, int]:
    """Drop a half-written last line (left by a crash) and count what is stored, reading the
    file in pieces so a 10 MiB log never sits in memory whole."""
    if not path.exists():
        return 0, 0
    lines = end = offset = 0
    with path.open("rb+") as handle:
        while chunk := handle.read(REPAIR_CHUNK_BYTES):
            lines += chunk.count(b"\n")
            last = chunk.rfind(b"\n")
            if last >= 0:
                end = offset + last + 1
            offset += len(chunk)
        if end != offset:
            handle.truncate(end)
    return lines, end


class LogStore:
    """Owns the log directory: writers for running runs, readers for everyone else."""

    def __init__(self, logs_dir: Path, max_bytes: int, hub: LogHub) -> None:
        self.logs_dir = logs_dir
        self.max_bytes = max_bytes
        self.hub = hub
        logs_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, run_id: UUID) -> Path:
        return self.logs_dir / f"{run_id}.log"

    def open_writer(self, run_id: UUID, masks: list[str] | None = None) -> LogWriter:
        """A writer for the run's log; each of `masks` is written as *** wherever it appears."""
        return LogWriter(self.path_for(run_id), run_id, self.max_bytes, self.hub, masks or [])

    async def open_writer_off_loop(self, run_id: UUID, masks: list[str] | None = None) -> LogWriter:
        """open_writer in a worker thread: opening repairs and counts the stored log, which can
        be megabytes when a run is re-attached."""
        return await asyncio.to_thread(self.open_writer, run_id, masks)

    def read_lines(self, run_id: UUID, after: int = 0) -> Generator[tuple[int, str], None, None]:
        """Stored lines numbered from 1, skipping the first `after`."""
        path = self.path_for(run_id)
        if not path.exists():
            return
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number > after and raw.endswith(b"\n"):
                    yield number, raw[:-1].decode("utf-8", "replace")

    def offset_after(self, run_id: UUID, lines: int) -> int:
        """The byte offset just after the first `lines` stored lines."""
        path = self.path_for(run_id)
        if lines <= 0 or not path.exists():
            return 0
        offset = 0
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith(b"\n"):
                    break
                offset += len(raw)
                if number == lines:
                    break
        return offset

    def read_new(
        self, run_id: UUID, number: int, offset: int, limit: int = REPAIR_CHUNK_BYTES
    ) -> tuple[list[tuple[int, str]], int]:
        """Complete lines stored from byte `offset` on (line `number` + 1 and later, at most
        about `limit` bytes of them), and the offset after them: how a follower on another
        replica reads a log that replica is writing."""
        path = self.path_for(run_id)
        if not path.exists():
            return [], offset
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(limit)
        end = data.rfind(b"\n") + 1
        raw_lines = data[:end].split(b"\n")[:-1]
        lines = [
            (number + index, raw.decode("utf-8", "replace"))
            for index, raw in enumerate(raw_lines, start=1)
        ]
        return lines, offset + end

    def read_chunks(self, run_id: UUID, size: int = 256 * 1024) -> Generator[bytes, None, None]:
        """The stored log in pieces of `size` bytes (memory stays flat for a download)."""
        path = self.path_for(run_id)
        if not path.exists():
            return
        with path.open("rb") as handle:
            while chunk := handle.read(size):
                yield chunk

    def delete(self, run_id: UUID) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_for(run_id))
