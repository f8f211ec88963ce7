"""Exact ends from a source's access log: every listener that left, as a `ListenerLeft`.

The follower reads, the caller commits: `read()` hands out the departures with the log position
just after their lines, and both must be committed in one transaction (see `sources.tailer`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from audimeter.config import SourceConfig
from audimeter.observations import ListenerLeft
from audimeter.sources.accesslog import is_listener, parser_for
from audimeter.sources.tailer import LogTailer, TailError
from audimeter.store import LogPosition

log = logging.getLogger(__name__)


class LogFollower:
    """A source's access log, read for exact ends; each finished listener is a `ListenerLeft`.

    `position` is where the previous run stopped (`Store.log_position`), None on a first start.
    """

    def __init__(self, source: SourceConfig, path: Path, position: LogPosition | None) -> None:
        self._source = source.name
        self._tailer = LogTailer(source.name, path, position)
        self._parse = parser_for(source.kind)
        # SHOUTcast's logs do not name the stream: DNAS 1 has one, mount "/"; for DNAS 2 the
        # sessionizer looks among the source's streams.
        self._mount = {"shoutcast1": "/", "shoutcast2": ""}.get(source.kind)
        self._reported: LogPosition | None = None

    def read(self) -> tuple[list[ListenerLeft], LogPosition] | None:
        """The listeners that left since the last read, and the position after their lines;
        None when the log has not moved or cannot be read (logged once per kind of failure)."""
        try:
            lines, position = self._tailer.read()
        except TailError as exc:
            log.warning("source %s: %s", self._source, exc)
            return None
        if position == self._reported:
            return None
        self._reported = position
        left = []
        for line in lines:
            entry = self._parse(line)
            if entry is not None and is_listener(entry):
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
        return left, position

    def close(self) -> None:
        self._tailer.close()
