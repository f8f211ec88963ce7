"""Exact ends from a source's access log: every listener that left, as a `ListenerLeft`.

The follower reads, the caller commits: `read()` hands out the departures with the log position
just after their lines, and both must be committed in one transaction (see `sources.tailer`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from audimeter.config import SourceConfig
from audimeter.logs import ProblemLog
from audimeter.observations import ListenerLeft, LogPosition
from audimeter.sources.accesslog import is_directive, is_listener, parser_for
from audimeter.sources.tailer import LogTailer, TailError

log = logging.getLogger(__name__)

UNREADABLE_REPORT_INTERVAL = 600.0
"""Seconds between two warnings about lines that are not access-log lines."""


class LogFollower:
    """A source's access log, read for exact ends; each finished listener is a `ListenerLeft`.

    `position` is where the previous run stopped (`Store.log_position`), None on a first start.
    """

    def __init__(
        self,
        source: SourceConfig,
        path: Path,
        position: LogPosition | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source.name
        self._kind = source.kind
        self._path = path
        self._clock = clock
        self._tailer = LogTailer(source.name, path, position)
        self._parse = parser_for(source.kind)
        # SHOUTcast's logs do not name the stream: DNAS 1 has one, mount "/"; for DNAS 2 the
        # sessionizer looks among the source's streams.
        self._mount = {"shoutcast1": "/", "shoutcast2": ""}.get(source.kind)
        self._reported: LogPosition | None = None
        self._problems = ProblemLog(log)
        self._unreadable = 0
        """Lines skipped as unreadable since the last warning about them."""
        self._warned_at: float | None = None
        self.lines = dict.fromkeys(("listener", "other", "unreadable", "directive"), 0)
        """Lines read, by outcome: a listener's departure, another request, not a line of the
        log's format, a W3C directive."""

    @property
    def source(self) -> str:
        return self._source

    def read(self) -> tuple[list[ListenerLeft], LogPosition] | None:
        """The listeners that left since the last read, and the position after their lines;
        None when the log has not moved or cannot be read (logged once per kind of failure)."""
        try:
            lines, position = self._tailer.read()
        except TailError as exc:
            self._problems.failed(self._path, str(exc), "source %s: %s", self._source, exc)
            return None
        self._problems.succeeded(
            self._path, "source %s: the access log %s can be read again", self._source, self._path
        )
        if position == self._reported:
            return None
        self._reported = position
        left = []
        counts = self.lines
        for line in lines:
            entry = self._parse(line)
            if entry is None:
                directive = is_directive(line)
                self._unreadable += not directive
                counts["directive" if directive else "unreadable"] += 1
            elif not is_listener(entry):
                counts["other"] += 1
            else:
                counts["listener"] += 1
                left.append(
                    ListenerLeft(
                        self._source,
                        entry.end,
                        entry.path if self._mount is None else self._mount,
                        entry.duration,
                        ip=entry.ip,
                        user_agent=entry.user_agent,
                        referrer=entry.referrer,
                    )
                )
        self._report_unreadable()
        return left, position

    def _report_unreadable(self) -> None:
        """Warn about skipped lines, with their count, at most every few minutes: a log in
        another format would otherwise warn at every read."""
        now = self._clock()
        if not self._unreadable or (
            self._warned_at is not None and now - self._warned_at < UNREADABLE_REPORT_INTERVAL
        ):
            return
        log.warning(
            "source %s: %d line(s) of %s are not %s access-log lines and were skipped; check "
            "that access_log names the server's access log",
            self._source,
            self._unreadable,
            self._path,
            "Icecast" if self._kind == "icecast" else "SHOUTcast",
        )
        self._unreadable = 0
        self._warned_at = now

    def close(self) -> None:
        self._tailer.close()
