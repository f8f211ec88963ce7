"""What sources report: the input of the sessionizer.

Times are whole unix seconds. Icecast reports `Connected` in whole seconds, so finer times would
pretend to a precision the servers do not have.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

MAX_CONNECTED = 10 * 366 * 86400
"""Longer than ten years connected is a server's bug (a zero or future start time)."""


def plausible(seconds: int) -> int:
    """Seconds connected as reported, or 0 (just connected) when negative or absurd."""
    return seconds if 0 <= seconds <= MAX_CONNECTED else 0


class Listener(NamedTuple):
    """One connected listener as a server lists it (a tuple: polls build many of them)."""

    client_id: str
    ip: str
    user_agent: str
    connected: int
    """Seconds since the server accepted the connection."""
    referrer: str = ""
    forwarded_for: str = ""
    """The raw X-Forwarded-For header, where the server reports it."""


class ListenerTable(Protocol):
    """The listeners of one poll: every client id at once, a listener's details on demand.

    Each poll lists mostly the same listeners as the one before, and for those the sessionizer
    needs nothing but the id; so sources may decode the details of new listeners only.
    """

    @property
    def client_ids(self) -> Sequence[str]: ...

    def details(self, index: int) -> Listener:
        """The listener whose id is `client_ids[index]`."""
        ...


class ListenerList:
    """A `ListenerTable` of listeners decoded up front."""

    __slots__ = ("_listeners", "client_ids")

    def __init__(self, listeners: Iterable[Listener]) -> None:
        self._listeners = list(listeners)
        self.client_ids: Sequence[str] = [listener.client_id for listener in self._listeners]

    def details(self, index: int) -> Listener:
        return self._listeners[index]


def decode_all(table: ListenerTable) -> list[Listener]:
    return [table.details(index) for index in range(len(table.client_ids))]


@dataclass(frozen=True, slots=True)
class SourceSeen:
    """A server answered: which instance of it is running and which mounts are live."""

    source: str
    at: int
    instance: str
    mounts: frozenset[str]


@dataclass(frozen=True, slots=True)
class MountPolled:
    """The complete list of listeners on one mount at time `at`."""

    source: str
    at: int
    instance: str
    mount: str
    listeners: ListenerTable
    title: str | None = None
    """The title on air ("" for none); None when the source does not say (keep what was)."""


def now_playing(artist: str | None, title: str | None) -> str:
    """ "artist - title" when both are given, else whichever is; "" for none."""
    parts = [part.strip() for part in (artist, title) if part and part.strip()]
    return " - ".join(parts)


@dataclass(frozen=True, slots=True)
class ListenerJoined:
    """A server said a listener connected at `at` (Icecast's URL authentication)."""

    source: str
    at: int
    mount: str
    client_id: str
    ip: str
    user_agent: str
    referrer: str = ""
    query: str = ""
    """The query string of the mount the listener asked for, without the `?`."""
    forwarded_for: str = ""


@dataclass(frozen=True, slots=True)
class ListenerLeft:
    """A server said a connection ended at `at` after `duration` seconds.

    From Icecast's URL authentication (`client_id` set) or from an access log line (no client id:
    matched to a session by mount, address, player and times).
    """

    source: str
    at: int
    mount: str
    duration: int
    client_id: str = ""
    ip: str = ""
    user_agent: str = ""
    referrer: str = ""
    query: str = ""
    forwarded_for: str = ""


@dataclass(frozen=True, slots=True)
class LogPosition:
    """How far a followed log file has been read: its inode and the offset after the last line.

    A log follower reports it with the observations it read, and the store keeps it with their
    effects, so that a restart reads on from there."""

    source: str
    path: str
    inode: int
    offset: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed; lets outage graces expire while servers are silent."""

    at: int


Observation = SourceSeen | MountPolled | ListenerJoined | ListenerLeft | Tick
