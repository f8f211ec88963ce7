"""Following a server's access log: complete new lines, and how far they reach.

`LogTailer` is synchronous and does only file I/O; the daemon calls `read()` from its loop about
once a second and commits the returned `LogPosition` in the same transaction as the effects of
the lines. After a crash the next run resumes from the committed position and reads the same
lines again, which is why the position only ever moves past complete lines.

Rules, in the order they matter:

* First start (no stored position): reading begins at the end of the file as it is then. The
  lines already there belong to `audimeter import`; the live run only sees what comes next.
  A last line still being written then is read once finished. A file that does not exist yet
  is new once it appears, and is read from its start.
* Stored position, same inode: resume at its offset, or at 0 if the file is now shorter
  (truncated while audimeter was stopped).
* Stored position, different inode: the file was rotated while audimeter was stopped. The old
  file cannot be found from the path (its new name depends on the rotation scheme), so the new
  file is read from 0 and the unread end of the old one is lost.
* Rename rotation (logrotate's default, Icecast's own `logsize` rotation): the old descriptor
  stays open; once the path names another file that the writer has started to fill, the old
  descriptor is drained and the new file is read from 0. An unfinished last line of the old
  file is dropped.
* copytruncate: same inode, now shorter than what was read: read again from 0.
* Missing file: no lines, no error; the next call tries again.
* Other failures (permission denied, a directory, I/O errors) raise `TailError`, at every call
  that fails (the caller decides how often to say so).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import TracebackType

from audimeter.observations import LogPosition

_CHUNK = 64 * 1024
"""Bytes asked of the file at once."""


class TailError(OSError):
    """The log file exists but cannot be read; the message names it and says what to do."""


class LogTailer:
    """Hands out the complete lines appended to one log file, across rotations and restarts.

    `position` is where the previous run stopped (`Store.log_position`), None on a first start.
    Lines longer than `max_line` bytes are skipped and counted in `skipped_long_lines`; one
    `read()` reads at most `max_read` bytes.
    """

    def __init__(
        self,
        source: str,
        path: Path,
        position: LogPosition | None,
        *,
        max_line: int = 65536,
        max_read: int = 8 * 1024 * 1024,
    ) -> None:
        if max_line < 1 or max_read < 1:
            raise ValueError("max_line and max_read must be positive")
        self.source = source
        self.path = path
        self.max_line = max_line
        self.max_read = max_read
        self.skipped_long_lines = 0
        self._file: io.FileIO | None = None
        self._device = 0
        # Until the file is first opened these describe the stored position; inode 0 matches no
        # file, so a position saved before the file ever existed makes it be read from 0.
        self._inode = position.inode if position else 0
        # _offset: just after the last line handed out or skipped, what the caller may commit.
        # _scan: how far the open file has been read; the bytes in between are an unfinished
        # line, kept in _pending unless it is already longer than max_line (_skipping).
        self._offset = position.offset if position else 0
        self._scan = self._offset
        self._pending = bytearray()
        self._skipping = False
        self._start_at_end = position is None
        self._closed = False

    @property
    def position(self) -> LogPosition:
        """The position after the last line handed out (or skipped)."""
        return LogPosition(self.source, str(self.path), self._inode, self._offset)

    def read(self) -> tuple[list[str], LogPosition]:
        """The complete lines written since the last call, and the position just after them.

        Raises `TailError` when the file cannot be read for another reason than not existing.
        """
        if self._closed:
            raise ValueError(f"the tailer of {self.path} is closed")
        lines: list[str] = []
        try:
            self._read_into(lines)
        except OSError as exc:
            # Lines taken already must reach the caller, or the offset would pass over them;
            # the failure shows again on the next call.
            if not lines:
                raise TailError(self._describe(exc)) from None
        return lines, self.position

    def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> LogTailer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------------

    def _read_into(self, lines: list[str]) -> None:
        if self._file is None and not self._open_first():
            return
        assert self._file is not None
        if os.fstat(self._file.fileno()).st_size < self._scan:
            # copytruncate (or any truncation): what was read is gone; the file starts afresh.
            # Lines written between logrotate's copy and its truncation are lost; that race is
            # copytruncate's own.
            self._restart_at(0)
        budget = self.max_read
        while True:
            budget, at_end = self._drain(lines, budget)
            if not at_end or not self._replaced():
                return
            # The writer has moved to the new file, so the old one is final now; drain again for
            # what it wrote there between the first drain and its switch.
            budget, at_end = self._drain(lines, budget)
            if not at_end or not self._switch():
                return

    def _drain(self, lines: list[str], budget: int) -> tuple[int, bool]:
        """Read the open file up to its end or the budget; True when its end was reached."""
        assert self._file is not None
        while budget > 0:
            self._file.seek(self._scan)
            chunk = self._file.read(min(budget, _CHUNK))
            if not chunk:
                return budget, True
            budget -= len(chunk)
            self._consume(chunk, lines)
        return budget, False

    def _consume(self, chunk: bytes, lines: list[str]) -> None:
        base = self._scan
        self._scan += len(chunk)
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if self._skipping:
                self.skipped_long_lines += 1
                self._skipping = False
            elif len(self._pending) + end - start > self.max_line:
                self.skipped_long_lines += 1
            elif self._pending:
                self._pending += chunk[start:end]
                lines.append(_decode(self._pending))
            else:
                lines.append(_decode(chunk[start:end]))
            self._pending.clear()
            self._offset = base + end + 1
            start = end + 1
        if self._skipping or start == len(chunk):
            return
        # An unfinished line waits for its newline; the offset stays before it. Beyond max_line
        # it can only be skipped, so its bytes are not kept.
        self._pending += chunk[start:]
        if len(self._pending) > self.max_line:
            self._pending.clear()
            self._skipping = True

    # -- opening and rotation ---------------------------------------------------------------------

    def _open_first(self) -> bool:
        """Open the file the first time it can be found; False while it does not exist."""
        try:
            file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open across calls
        except FileNotFoundError:
            # Created after audimeter started: everything in it will be new.
            self._start_at_end = False
            return False
        try:
            stat = os.fstat(file.fileno())
            skipping = False
            if self._start_at_end:
                offset, skipping = self._last_line_start(file, stat.st_size)
            elif stat.st_ino == self._inode and stat.st_size >= self._offset:
                offset = self._offset
            else:
                # Rotated or truncated while audimeter was stopped: the stored offset means
                # nothing in this file.
                offset = 0
        except BaseException:
            file.close()
            raise
        self._start_at_end = False
        self._attach(file, stat)
        self._restart_at(offset)
        self._skipping = skipping
        return True

    def _last_line_start(self, file: io.FileIO, size: int) -> tuple[int, bool]:
        """Where the file's last, unfinished line starts (its end when there is none).

        The second value says that this line is already too long to be kept.
        """
        window = min(size, self.max_line + 1)
        file.seek(size - window)
        tail = file.read(window) or b""
        cut = tail.rfind(b"\n")
        if cut >= 0:
            return size - window + cut + 1, False
        if window == size:
            return 0, False
        return size, True

    def _replaced(self) -> bool:
        """Whether the path names another file than the open one, and the writer has begun it.

        After a rename, logrotate creates the new file empty and only then tells the server to
        reopen its log; until the new file has data, lines may still arrive in the old one.
        """
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            # Renamed and not created again yet: the writer still holds the old file.
            return False
        same = (stat.st_ino, stat.st_dev) == (self._inode, self._device)
        return not same and stat.st_size > 0

    def _switch(self) -> bool:
        try:
            file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open across calls
        except FileNotFoundError:
            return False
        try:
            stat = os.fstat(file.fileno())
        except BaseException:
            file.close()
            raise
        # An unfinished last line of the old file will never be completed: it is dropped.
        assert self._file is not None
        self._file.close()
        self._attach(file, stat)
        self._restart_at(0)
        return True

    def _attach(self, file: io.FileIO, stat: os.stat_result) -> None:
        self._file = file
        self._inode = stat.st_ino
        self._device = stat.st_dev

    def _restart_at(self, offset: int) -> None:
        self._offset = self._scan = offset
        self._pending.clear()
        self._skipping = False

    def _describe(self, exc: OSError) -> str:
        reason = exc.strerror or str(exc)
        if isinstance(exc, PermissionError):
            return (
                f"cannot read the access log {self.path} ({reason}): give the user audimeter "
                "runs as read access to the file and search access to its directories, e.g. "
                "by adding it to the group owning the log"
            )
        return (
            f"cannot read the access log {self.path} ({reason}): check that access_log names "
            "the server's log file"
        )


def _decode(raw: bytes | bytearray) -> str:
    # User agents and referrers are not always UTF-8; a replacement character beats losing the
    # listener. A CR of a CRLF line end goes with the newline.
    return raw.decode("utf-8", errors="replace").removesuffix("\r")
