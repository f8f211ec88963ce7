"""What sources report: the input of the sessionizer.

Times are whole unix seconds. Icecast reports `Connected` in whole seconds, so finer times would
pretend to a precision the servers do not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


class Listener(NamedTuple):
    """One connected listener as a server lists it (a tuple: polls build many of them)."""

    client_id: str
    ip: str
    user_agent: str
    connected: int
    """Seconds since the server accepted the connection."""
    referrer: str = ""


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
    listeners: Sequence[Listener]


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed; lets outage graces expire while servers are silent."""

    at: int


Observation = SourceSeen | MountPolled | Tick
