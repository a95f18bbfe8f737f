"""A run container's output on its way into the run's log.

Every follower reads the container's output from its first byte: the attachment made before
the start, or the logs API when re-attaching after the engine or the server came back. So the
lines already stored are counted, and a new follower skips that many: nothing twice, nothing
left out (as long as the engine's json-file log still holds them; see README).
"""

from __future__ import annotations

from taskdash.logs.lines import split_lines
from taskdash.logs.store import LogWriter


class ContainerOutput:
    def __init__(self, writer: LogWriter, stored: int = 0) -> None:
        self.writer = writer
        # The container's lines the log holds (the log may hold others before them: the build's).
        self.stored = stored
        self._read = 0  # complete lines the current follower read
        self._pending = ""

    def feed(self, chunk: str) -> None:
        if self.writer.truncated:
            # Nothing more is stored, so nothing needs counting: the output is only drained
            # (a reader that falls behind slows the container down).
            return
        lines, self._pending = split_lines(self._pending, chunk)
        fresh = lines[max(self.stored - self._read, 0) :]
        self._read += len(lines)
        if fresh:
            self.writer.write(fresh)
            self.stored += len(fresh)

    def end(self) -> None:
        """The follower read everything the container printed: its unterminated last line is
        whole now."""
        if self._pending:
            self.feed("\n")

    def again(self) -> None:
        """The next follower reads from the container's first byte again; a half line read so
        far comes again whole."""
        self._read = 0
        self._pending = ""
