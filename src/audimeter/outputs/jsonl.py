"""The JSON-lines outputs: every event as one JSON object per line, to a file or to stdout.

`jsonl` appends to `[jsonl] path` (`-` for stdout); `stdout`, the output when neither [matomo]
nor [jsonl] is configured, writes to audimeter's standard output. A batch is written, flushed
and fsynced (off the event loop) before the cursor moves past it, so a line is never lost; after
a crash the last batch may be written again. SIGHUP makes the file output reopen its file at the
next batch (after logrotate moved it).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from pathlib import Path
from typing import IO, Any

from audimeter.outputs.base import acquire
from audimeter.sinks import ENCODER, event_record
from audimeter.store import JournalRow, Store

log = logging.getLogger(__name__)

BATCH = 1000
LOCK_PATIENCE = 1.0
RECHECK = 5.0
"""Seconds an idle output waits before it looks at the journal again (an import beside it)."""
RETRY = 5.0
"""Seconds before a failed write is tried again."""


def record(row: JournalRow) -> dict[str, Any] | None:
    """The JSON object of a journal row; None for a ready-made Matomo request."""
    if row.event is None:
        return None
    data = event_record(row.event)
    data["visitor_id"] = row.visitor_id
    data["seq"] = row.seq
    return data


class JsonLinesOutput:
    def __init__(
        self,
        store: Store,
        name: str,
        *,
        path: Path | None = None,
        stream: IO[str] | None = None,
        limit: int | None = None,
        batch: int = BATCH,
    ) -> None:
        """Writes to the file `path`, or else to `stream`."""
        self.name = name
        self.limit = limit
        self._store = store
        self._path = path
        self._stream = stream
        self._file: IO[str] | None = None
        self._batch = batch
        self._wakeup = asyncio.Event()
        self._reopen = False
        self._failing = False
        self.written = 0
        self.failures = 0
        """Batches that could not be written (each retried)."""

    def notify(self) -> None:
        self._wakeup.set()

    def reopen(self) -> None:
        """Open the file again before the next batch (it was moved away)."""
        self._reopen = True

    def backlog(self) -> int:
        return self._store.last_seq() - self._store.cursor(self.name)

    async def run(self) -> None:
        while True:
            if not await self.flush_once():
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), RECHECK)

    async def drain(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while await self.flush_once():
                    pass

    async def flush_once(self, upto: int | None = None) -> bool:
        lock = self._store.output_lock(self.name)
        if not await acquire(lock, LOCK_PATIENCE):
            return True
        try:
            rows = self._store.journal_batch(self._store.cursor(self.name), self._batch, upto)
            if not rows:
                return False
            records = [data for row in rows if (data := record(row)) is not None]
            text = "".join(ENCODER.encode(data) + "\n" for data in records)
            writing = asyncio.ensure_future(asyncio.to_thread(self._write, text))
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                # The thread writes on regardless (a stop while it writes): once it has, the
                # cursor must say so, or the drain at the stop writes the same lines again.
                with contextlib.suppress(OSError):
                    await writing
                    self._store.advance(self.name, rows[-1].seq)
                raise
            except OSError as exc:
                self.failures += 1
                if not self._failing:
                    log.error(
                        "%s: cannot write %s (%s); retrying every %.0f s, nothing is lost",
                        self.name,
                        self._path or "stdout",
                        exc.strerror or exc,
                        RETRY,
                    )
                self._failing = True
                self._close()
                await asyncio.sleep(RETRY)
                return True
            if self._failing:
                log.info("%s: writing again", self.name)
                self._failing = False
            self._store.advance(self.name, rows[-1].seq)
            self.written += len(records)
        finally:
            lock.release()
        return True

    def _write(self, text: str) -> None:
        out = self._open()
        if text:
            out.write(text)
            out.flush()
            if self._path is not None:
                os.fsync(out.fileno())
                return
            # Standard output may be a file; a pipe or a terminal cannot be synced, nor need be.
            with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
                os.fsync(out.fileno())

    def _open(self) -> IO[str]:
        if self._path is None:
            assert self._stream is not None
            return self._stream
        if self._reopen:
            self._reopen = False
            self._close()
        if self._file is None:
            self._file = self._path.open("a", encoding="utf-8")
        return self._file

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def close(self) -> None:
        self._close()
