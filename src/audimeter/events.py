"""What the sessionizer emits: listening sessions and their start, keep-alive and end."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Session:
    """One listening connection, from connect to disconnect."""

    source: str
    instance: str
    mount: str
    client_id: str
    ip: str
    user_agent: str
    referrer: str
    started_at: int
    slot: int
    """0 for the first open session of this (ip, user agent), 1 for a second one at the same time, …

    Sinks use it to tell apart listeners who look identical (one address, one player) while they
    listen at the same time, yet give a returning listener the same identity as before.
    """
    query: str = ""
    """The query string the listener asked for the mount with, where the server reports it."""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.source, self.instance, self.mount, self.client_id)


class EndReason(enum.StrEnum):
    LEFT = "left"
    """The server stopped listing the listener."""
    SERVER_RESTARTED = "server_restarted"
    MOUNT_REMOVED = "mount_removed"
    SOURCE_LOST = "source_lost"
    """The server could not be polled for longer than the outage grace."""


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session: Session

    @property
    def at(self) -> int:
        return self.session.started_at


@dataclass(frozen=True, slots=True)
class SessionKeptAlive:
    """The listener was still connected at `at`, a multiple of the keep-alive interval."""

    session: Session
    at: int
    previous_at: int
    """Time of this session's previous event, so `at - previous_at` seconds were listened since."""


@dataclass(frozen=True, slots=True)
class SessionEnded:
    session: Session
    at: int
    """The last moment the listener is known to have been connected."""
    previous_at: int
    reason: EndReason

    @property
    def duration(self) -> int:
        return self.at - self.session.started_at


Event = SessionStarted | SessionKeptAlive | SessionEnded
