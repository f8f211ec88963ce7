"""Sources: pollers that ask streaming servers who is listening and report observations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from audimeter.observations import Observation

Emit = Callable[[Observation], Awaitable[None]]


ERROR_KINDS = ("timeout", "unreachable", "refused", "http", "too_large", "transport", "invalid")


class SourceError(Exception):
    """A server could not be polled; the message names the source and what to check.

    `kind` sorts failures for the metrics (`ERROR_KINDS`): "timeout", "unreachable", "refused"
    (credentials), "http" (another status), "too_large", "transport", or "invalid" (an answer
    not understood).
    """

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What `audimeter check` reports about a server."""

    software: str
    """Server software and version, e.g. "Icecast 2.4.4"."""
    mounts: dict[str, int]
    """Live mounts (or streams) that the configuration follows, and their listener counts."""


class Poller(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def poll_interval(self) -> float: ...

    @property
    def software(self) -> str:
        """The server software and version its last answer named, "" before one did."""
        ...

    async def describe(self) -> ServerInfo:
        """Ask the server what it is and what it streams; raises `SourceError`."""
        ...

    async def poll(self, emit: Emit) -> None:
        """One poll cycle: emit a `SourceSeen`, then a `MountPolled` per mount that answered.

        Raises `SourceError` when the server cannot be asked at all.
        """
        ...
