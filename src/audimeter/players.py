"""The player of a session, named as Matomo names it in its "Browsers" report.

Matomo's `browserName` is the client that its DeviceDetector (PHP) finds in the user agent:
the browser's name for browsers, otherwise the client's own name (media player, mobile app,
library, feed reader, PIM), and "Unknown" when none is found. The PyPI package `device-detector`
ports DeviceDetector's rules to Python; it adds client parsers and rule files of its own (desktop
apps, generic "Name/1.0" extraction, app ids), which Matomo does not have, so only the parsers
Matomo runs, in its order, with the upstream rule files, are used here. Bots and devices are not
looked for: Matomo does not record bots, and the device does not change the client's name.

Parsing one agent takes milliseconds, but a station's listeners use few distinct players, so
names are remembered per agent (`CACHED_AGENTS`, least recently used first out).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

from device_detector import DeviceDetector  # type: ignore[import-untyped]
from device_detector.parser import (  # type: ignore[import-untyped]
    PIM,
    Browser,
    FeedReader,
    Library,
    MediaPlayer,
    MobileApp,
)

UNKNOWN = "Unknown"
"""The name of a player nobody recognises, or of an empty user agent, as Matomo shows it."""
CACHED_AGENTS = 4096
"""How many user agents' player names are remembered."""


def _upstream(parser: Any) -> type:
    """`parser` with Matomo's own rule files only (under its own name: the port finds the
    words that select a parser's rules by the parser's class name)."""
    files = tuple(f for f in parser.fixture_files if f.startswith("upstream/"))
    return type(parser.__name__, (parser,), {"fixture_files": files, "__slots__": ()})


class _MatomoClients(DeviceDetector):  # type: ignore[misc]
    # The client parsers of Matomo's DeviceDetector, in its order.
    CLIENT_PARSERS: ClassVar[tuple[type, ...]] = tuple(
        _upstream(p) for p in (FeedReader, MobileApp, MediaPlayer, PIM, Browser, Library)
    )
    __slots__ = ()

    def extract_app_id(self) -> None:
        """Matomo does not name clients by the app ids this port also looks for."""

    def parse_os(self) -> None:
        """The client parsers do not look at the operating system (only the device parsers do):
        its rules would cost some 5 MB and a parse of each new agent for nothing."""


@lru_cache(maxsize=CACHED_AGENTS)
def player_name(user_agent: str) -> str:
    """The player Matomo shows for `user_agent`: "VLC", "iTunes", "Chrome", ..., or `UNKNOWN`."""
    if not user_agent.strip():
        return UNKNOWN
    detector = _MatomoClients(
        user_agent, skip_bot_detection=True, skip_device_detection=True, check_cache=False
    )
    name = detector.parse().client_name()
    # Matomo takes a name of two letters or less for an unknown browser code.
    return str(name) if len(name) > 2 else UNKNOWN
