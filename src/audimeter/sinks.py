"""Sinks that take session events straight from the pipeline (Matomo has its own package)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TextIO

from audimeter.events import Event, SessionEnded, SessionKeptAlive, SessionStarted

_KINDS = {SessionStarted: "start", SessionKeptAlive: "keepalive", SessionEnded: "end"}
ENCODER = json.JSONEncoder(ensure_ascii=False)
"""`json.dumps(…, ensure_ascii=False)` without making an encoder for each line."""


@lru_cache(maxsize=4096)
def _iso(timestamp: int) -> str:
    # A batch's events share few times: those of a poll, and their sessions' starts.
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def event_record(event: Event) -> dict[str, Any]:
    """A session event as plain JSON-ready data."""
    session = event.session
    record: dict[str, Any] = {
        "event": _KINDS[type(event)],
        "at": _iso(event.at),
        "source": session.source,
        "mount": session.mount,
        "client_id": session.client_id,
        "server_instance": session.instance,
        "ip": session.ip,
        "user_agent": session.user_agent,
        "started_at": _iso(session.started_at),
        "listened": event.at - session.started_at,
    }
    if session.referrer:
        record["referrer"] = session.referrer
    if isinstance(event, SessionEnded):
        record["reason"] = event.reason.value
    return record


class JsonLinesSink:
    """Writes every session event as one JSON line: the sink when no Matomo is configured."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, events: list[Event]) -> None:
        for event in events:
            self._stream.write(ENCODER.encode(event_record(event)) + "\n")
        self._stream.flush()
