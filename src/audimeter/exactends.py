"""Exact ends: which session a server's notice of an ended connection is about.

Theory of operation
-------------------
A poll says who is listening; it cannot say when someone stopped, only that they were there at
one poll and gone at the next. Icecast knows the exact moment: it tells its URL authentication
(`listener_remove`) and writes an access log line when a connection closes. That *notice* is a
`ListenerLeft`: a connection ended at `at` after `duration` seconds. From URL authentication it
carries the client id; a log line carries none, only the mount (not even that in SHOUTcast 2's
W3C log), the address, the player and the times. This module decides which session a notice is
about; the sessionizer then ends it there. It is pure: no clock, no I/O, no state of its own
beyond the memory of ended sessions.

Where a notice can point. A source listed in `exact_ends` does not end a session the moment a
poll misses it: the session is *gone*, its slot is free, and it waits up to that many seconds
for its notice (see `Gone`). When the wait is over it ends at its last sighting, as without
exact ends. Every session of such a source that has ended, either way, is *remembered* for
`RECENT_SECONDS` (see `Memory`), so a notice can be about an open session (the notice came
before the poll that would have missed it), a gone one (the usual case), or a remembered one
(the notice came late, or after the wait).

Matching a notice with a client id (`find_session`). It is the open or gone session of that id,
or a remembered one of that id. Client ids start again with the server, so a remembered session
of an earlier server instance is that one only when it also started when the notice says,
within `START_TOLERANCE`.

Matching a log line (`match_line`). Without an id, a line fits a session that

* has its (admitted) address;
* has its player. Icecast does not log a player as it lists it: 2.4 writes each byte outside
  printable ASCII (and `!`, `"`, backslash, backquote) as `.` (see `as_logged`), KH cuts it at
  `KH_CUT` bytes; and a player the listing could not show (bytes that are not UTF-8, which the
  log reader gives as U+FFFD) fits one listed without a player, if no session of that player
  fits;
* started within `START_TOLERANCE` of the line's start (its end minus its duration): the server
  and audimeter read whole-second clocks moments apart;
* was not listed after the line's end. A look-alike (same player, same address) that came and
  went between two polls must not take the line of one that is still listed.

The best fit (an exact player before an unlistable one, then the nearest start) wins.

What a match does (`Found`). A match with an open or gone session ends it exactly, at its start
plus the seconds the server measured when both agree on the start, else at the notice's time
(`exact_end`). A match with a remembered session does nothing: a notice never counts a session
twice. With one exception: a session that ended at its last sighting (an outage, a wait without
notice) and that the server lists again carries on as a new session of the same client id, and
the notice of that connection ends the new one. A notice that fits nothing is a session no poll
saw (shorter than a poll interval): the sessionizer replays it whole.

Remembered sessions are kept beyond their mount and their server instance, whose late notices
they are there for. They are forgotten `RECENT_SECONDS` after their end, counted from the
mount's last poll while its server is silent (its log may still be read on).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from audimeter.events import Session
from audimeter.observations import Listener, ListenerLeft, plausible

RECENT_SECONDS = 900
"""How long ended sessions are remembered, so that a late notice of their end is recognised."""
START_TOLERANCE = 3
"""Seconds by which a notice's start (end - duration) may differ from the polled start."""
KH_CUT = 150
"""Icecast-KH writes at most this many bytes of a user agent to its access log."""
UNREADABLE = "\ufffd"
"""What a log line holds for bytes that are not UTF-8: Icecast-KH leaves such a user agent out
of its listing, 2.5 lists it empty."""


@dataclass(frozen=True, slots=True)
class SessionRemembered:
    """An ended session of a source with exact ends, kept for `RECENT_SECONDS` so that a late
    notice of its end is recognised. `seen` is its last sighting by a poll (its start when it
    was never polled); `exact` says the end came from a notice rather than from a poll."""

    session: Session
    end: int
    seen: int
    exact: bool


@dataclass(slots=True)
class Gone:
    """A session missing from a poll, waiting until `deadline` for its notice."""

    session: Session
    last_seen: int
    deadline: int


Recent = dict[str, dict[str, SessionRemembered]]
"""Remembered sessions of one mount: server instance → client id → session, oldest first."""


class MountView(Protocol):
    """What matching needs of a mount: its instance, last poll, open and gone sessions."""

    @property
    def instance(self) -> str: ...

    @property
    def last_seen(self) -> int: ...

    @property
    def sessions(self) -> Mapping[str, Session]: ...

    @property
    def gone(self) -> Mapping[str, Gone]: ...


class Memory:
    """Ended sessions of sources with exact ends, by (source, mount)."""

    __slots__ = ("_recent",)

    def __init__(self) -> None:
        self._recent: dict[tuple[str, str], Recent] = {}

    def of(self, source: str, mount: str) -> Recent:
        """The remembered sessions of a mount (empty: not to be changed)."""
        return self._recent.get((source, mount), {})

    def mounts(self) -> list[tuple[str, str]]:
        return list(self._recent)

    def remember(self, entry: SessionRemembered) -> None:
        session = entry.session
        instances = self._recent.setdefault((session.source, session.mount), {})
        entries = instances.setdefault(session.instance, {})
        entries.pop(session.client_id, None)  # to the end, so that the oldest come first
        entries[session.client_id] = entry

    def forget(self, key: tuple[str, str], horizon: int) -> Iterator[Session]:
        """Drop (and yield) the remembered sessions of a mount that ended before `horizon`."""
        instances = self._recent.get(key)
        if instances is None:
            return
        for instance in list(instances):
            entries = instances[instance]
            while entries:
                client_id, entry = next(iter(entries.items()))
                if entry.end >= horizon:
                    break  # ends come nearly in order: the few late ones go a little later
                del entries[client_id]
                yield entry.session
            if not entries:
                del instances[instance]
        if not instances:
            del self._recent[key]


@dataclass(frozen=True, slots=True)
class Found:
    """A notice is about a known session. `client_id` names the open or gone session of the
    mount it ends; None when that session ended already and nothing is left to do."""

    client_id: str | None


def find_session(
    notice: ListenerLeft,
    state: MountView | None,
    recent: Recent,
    listener: Listener | None,
    start: int,
) -> Found | None:
    """The session of one mount that `notice` is about; None when it is about none of them.

    `listener` is the notice's listener as `admit` left it (None: it would never have counted),
    `start` the notice's start, `recent` the mount's remembered sessions.
    """
    if notice.client_id:
        client_id = notice.client_id
        if state is not None and (client_id in state.sessions or client_id in state.gone):
            return Found(client_id)
        for instance, entries in recent.items():
            entry = entries.get(client_id)
            if entry is None:
                continue
            current = state is not None and instance == state.instance
            if current or abs(entry.session.started_at - start) <= START_TOLERANCE:
                return Found(None)
        return None
    if listener is None:
        return None
    match = match_line(state, recent, listener, start, notice.at)
    if match is None:
        return None
    if isinstance(match, SessionRemembered):
        # Ended at its last sighting and listed again since: the notice ends the session
        # that carried on.
        carried_on = (
            not match.exact and state is not None and match.session.instance == state.instance
        )
        return Found(match.session.client_id if carried_on else None)
    session = match if isinstance(match, Session) else match.session
    return Found(session.client_id)


def match_line(
    state: MountView | None, recent: Recent, listener: Listener, start: int, end: int
) -> Session | Gone | SessionRemembered | None:
    """The session of a mount, open, gone or remembered, that a log line's (admitted) listener
    describes, the line having started at `start` and ended at `end`; None when none fits."""
    best: Session | Gone | SessionRemembered | None = None
    best_rank = (2, 0)
    latest = end + START_TOLERANCE
    ip, user_agent = listener.ip, listener.user_agent
    unlistable = UNREADABLE in user_agent
    candidates: list[Iterable[tuple[Session | Gone | SessionRemembered, Session]]] = []
    if state is not None:
        if state.last_seen <= latest:  # every open session was listed at the last poll
            candidates.append((session, session) for session in state.sessions.values())
        candidates.append((g, g.session) for g in state.gone.values() if g.last_seen <= latest)
    candidates += (
        ((e, e.session) for e in entries.values() if e.seen <= latest)
        for entries in recent.values()
    )
    for candidate, session in itertools.chain.from_iterable(candidates):
        gap = abs(session.started_at - start)
        if session.ip != ip or gap > START_TOLERANCE:
            continue
        if same_player(session.user_agent, user_agent):
            rank = (0, gap)
        elif unlistable and not session.user_agent:
            rank = (1, gap)
        else:
            continue
        if rank < best_rank:
            best, best_rank = candidate, rank
    return best


def exact_end(session: Session, notice: ListenerLeft) -> int:
    """Where a notice ends a session: its start plus the seconds the server measured, when both
    agree on the start within `START_TOLERANCE`; else the notice's own time."""
    connected = plausible(notice.duration)
    if abs(notice.at - connected - session.started_at) <= START_TOLERANCE:
        return session.started_at + connected
    return notice.at


def same_player(polled: str, line: str) -> bool:
    """Whether a polled user agent and a log line's are the same player: equal; the line's is
    the polled one as Icecast 2.4 logs it; or the line's is the polled one cut as Icecast-KH
    cuts it. (Not both in 2.4's form: that form is lossy, and a 2.5 line, decoded, is not in it.)"""
    if polled == line or as_logged(polled) == line:
        return True
    raw = polled.encode("utf-8", "replace")
    return len(raw) > KH_CUT and raw[:KH_CUT].decode("utf-8", "replace") == line


_LOGGED_AS_DOT = bytes(
    byte if 0x20 <= byte < 0x7F and chr(byte) not in '!"\\`' else ord(".") for byte in range(256)
)


def as_logged(user_agent: str) -> str:
    """A user agent as Icecast 2.4 writes it to its access log: each control character, `!`,
    `"`, backslash, backquote and byte outside ASCII as `.` (`Média` → `M..dia`)."""
    return user_agent.encode("utf-8", "replace").translate(_LOGGED_AS_DOT).decode("ascii")
