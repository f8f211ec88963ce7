"""The exact-end matcher on its own: notices and log lines in, the session they are about out."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from audimeter.events import Session
from audimeter.exactends import (
    KH_CUT,
    Found,
    Gone,
    Memory,
    Recent,
    SessionRemembered,
    exact_end,
    find_session,
    match_line,
    same_player,
)
from audimeter.observations import Listener, ListenerLeft

VLC = "VLC/3.0.18 LibVLC/3.0.18"
LONG = "Mozilla/5.0 " + "x" * 200


def session(client_id: str, ip: str, user_agent: str, start: int, instance: str = "i2") -> Session:
    return Session("main", instance, "/live", client_id, ip, user_agent, "", start, 0)


@dataclass
class Mount:
    instance: str = "i2"
    last_seen: int = 1000
    sessions: dict[str, Session] = field(default_factory=dict)
    gone: dict[str, Gone] = field(default_factory=dict)


def mount() -> Mount:
    """Listed at 1000: open sessions, one gone since its last sighting at 990."""
    listed = [
        session("vlc", "10.0.0.1", VLC, 500),
        session("media", "10.0.0.2", "Média Player/1.0", 600),
        session("long", "10.0.0.3", LONG, 700),
        session("blank", "10.0.0.4", "", 800),
        session("odd", "10.0.0.5", "Player \ufffd", 900),
        session("blank5", "10.0.0.5", "", 900),
        session("near950", "10.0.0.6", VLC, 950),
        session("near952", "10.0.0.6", VLC, 952),
    ]
    return Mount(
        sessions={s.client_id: s for s in listed},
        gone={"left": Gone(session("left", "10.0.0.7", VLC, 400), 990, 1100)},
    )


def recent() -> Recent:
    """Remembered: one of an earlier server instance, one ended exactly, one at its sighting."""
    return {
        "i1": {
            "old": SessionRemembered(session("old", "10.0.0.8", VLC, 100, "i1"), 300, 290, True)
        },
        "i2": {
            "exact": SessionRemembered(session("exact", "10.0.0.9", VLC, 200), 320, 310, True),
            "vlc": SessionRemembered(session("vlc", "10.0.0.1", VLC, 500), 990, 990, False),
        },
    }


def chosen(match: Session | Gone | SessionRemembered | None) -> str | None:
    if match is None:
        return None
    if isinstance(match, Session):
        return f"open {match.client_id}"
    kind = "gone" if isinstance(match, Gone) else "remembered"
    return f"{kind} {match.session.client_id}"


@pytest.mark.parametrize(
    ("ip", "user_agent", "start", "end", "expected"),
    [
        # same address and player, started when the line says
        ("10.0.0.1", VLC, 500, 1010, "open vlc"),
        ("10.0.0.1", VLC, 503, 1010, "open vlc"),  # within START_TOLERANCE
        ("10.0.0.1", VLC, 504, 1010, None),
        ("10.0.0.99", VLC, 500, 1010, None),  # another address
        ("10.0.0.1", "Winamp/5.0", 500, 1010, None),  # another player
        # players as the servers log them
        ("10.0.0.2", "M..dia Player/1.0", 600, 1010, "open media"),  # Icecast 2.4's dots
        ("10.0.0.3", LONG[:KH_CUT], 700, 1010, "open long"),  # Icecast-KH's cut
        ("10.0.0.3", LONG[: KH_CUT - 1], 700, 1010, None),
        ("10.0.0.4", "Bad\ufffdPlayer", 800, 1010, "open blank"),  # unlistable: listed blank
        ("10.0.0.4", "Good Player", 800, 1010, None),  # listable: a blank listing is another
        # the best fit: a listed player before a blank listing, then the nearest start
        ("10.0.0.5", "Player \ufffd", 900, 1010, "open odd"),
        ("10.0.0.6", VLC, 952, 1010, "open near952"),
        ("10.0.0.6", VLC, 950, 1010, "open near950"),
        ("10.0.0.6", VLC, 951, 1010, "open near950"),  # a tie: the first listed
        # listed after the line ended: a look-alike that came and went between two polls
        ("10.0.0.6", VLC, 950, 996, None),
        ("10.0.0.6", VLC, 950, 997, "open near950"),  # within START_TOLERANCE of the poll
        # not listed after: the session that ended at its sighting before it was listed again
        ("10.0.0.1", VLC, 500, 996, "remembered vlc"),
        # gone, and remembered (from any server instance)
        ("10.0.0.7", VLC, 400, 995, "gone left"),
        ("10.0.0.7", VLC, 400, 986, None),  # listed at 990, after the line ended
        ("10.0.0.8", VLC, 100, 300, "remembered old"),
        ("10.0.0.9", VLC, 201, 320, "remembered exact"),
    ],
)
def test_match_line(ip: str, user_agent: str, start: int, end: int, expected: str | None) -> None:
    listener = Listener("", ip, user_agent, 0)
    assert chosen(match_line(mount(), recent(), listener, start, end)) == expected


def test_match_line_without_a_polled_mount() -> None:
    listener = Listener("", "10.0.0.8", VLC, 0)
    assert chosen(match_line(None, recent(), listener, 100, 300)) == "remembered old"
    assert match_line(None, {}, listener, 100, 300) is None


def notice(
    at: int, duration: int, client_id: str = "", ip: str = "", agent: str = ""
) -> ListenerLeft:
    return ListenerLeft("main", at, "/live", duration, client_id, ip, agent)


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        # URL authentication names the client
        (notice(1005, 505, "vlc"), Found("vlc")),  # open: ends it
        (notice(1005, 605, "left"), Found("left")),  # gone: ends it
        (notice(330, 130, "exact"), Found(None)),  # ended already: nothing to do
        (notice(330, 130, "unknown"), None),  # never seen: replayed
        (notice(300, 200, "old"), Found(None)),  # an earlier server's client, same start
        (notice(300, 100, "old"), None),  # an earlier server's id, used again: another client
        # a log line names none
        (notice(1010, 510, ip="10.0.0.1", agent=VLC), Found("vlc")),
        (notice(330, 129, ip="10.0.0.9", agent=VLC), Found(None)),  # ended exactly already
        (notice(995, 595, ip="10.0.0.7", agent=VLC), Found("left")),
    ],
)
def test_find_session(left: ListenerLeft, expected: Found | None) -> None:
    listener = Listener("", left.ip, left.user_agent, 0)
    start = left.at - left.duration
    assert find_session(left, mount(), recent(), listener, start) == expected


def test_a_line_about_a_session_that_carried_on_ends_the_new_one() -> None:
    """Ended at its last sighting (a wait without notice) and listed again since."""
    state = Mount(sessions={"vlc": session("vlc", "10.0.0.1", VLC, 1000)})
    left = notice(995, 495, ip="10.0.0.1", agent=VLC)
    listener = Listener("", "10.0.0.1", VLC, 0)
    assert find_session(left, state, recent(), listener, 500) == Found("vlc")
    assert find_session(left, None, recent(), listener, 500) == Found(None)


def test_a_line_of_a_listener_left_out_is_about_nothing() -> None:
    assert find_session(notice(1010, 510, ip="10.0.0.1", agent=VLC), mount(), {}, None, 500) is None


@pytest.mark.parametrize(
    ("at", "duration", "expected"),
    [
        (1130, 130, 1130),  # agrees on the start: start + duration
        (1133, 130, 1130),  # the clocks read 3 s apart
        (1134, 130, 1134),  # disagrees: the notice's time
        (1130, -5, 1130),  # an absurd duration: the notice's time
    ],
)
def test_exact_end(at: int, duration: int, expected: int) -> None:
    assert exact_end(session("a", "10.0.0.1", VLC, 1000), notice(at, duration)) == expected


@pytest.mark.parametrize(
    ("polled", "line", "same"),
    [
        (VLC, VLC, True),
        ("Média", "M..dia", True),
        ('a"b\\c`d!e\tf', "a.b.c.d.e.f", True),
        ("Média", "Media", False),
        (LONG, LONG[:KH_CUT], True),
        (VLC, VLC[:10], False),  # only KH cuts, and only beyond KH_CUT bytes
        ("\t\t\t", "\ufffd", False),  # both are "..." in 2.4's form: a 2.5 line is not in it
        ("Média", "Média", True),  # a 2.5 line, its escapes decoded
    ],
)
def test_same_player(polled: str, line: str, same: bool) -> None:
    assert same_player(polled, line) is same


def test_memory_forgets_in_order_of_end() -> None:
    memory = Memory()
    for client_id, end in (("a", 100), ("b", 200), ("c", 300)):
        memory.remember(SessionRemembered(session(client_id, "10.0.0.1", VLC, 0), end, end, True))
    assert [s.client_id for s in memory.forget(("main", "/live"), 250)] == ["a", "b"]
    assert list(memory.of("main", "/live")["i2"]) == ["c"]
    assert [s.client_id for s in memory.forget(("main", "/live"), 301)] == ["c"]
    assert memory.mounts() == []
