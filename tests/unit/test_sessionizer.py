"""The sessionizer as tables: observations in, events out."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest

from audimeter.events import (
    EndReason,
    Event,
    Session,
    SessionEnded,
    SessionKeptAlive,
    SessionStarted,
)
from audimeter.observations import (
    Listener,
    ListenerJoined,
    ListenerLeft,
    ListenerList,
    MountPolled,
    Observation,
    SourceSeen,
    Tick,
    decode_all,
)
from audimeter.sessionizer import (
    MountRecord,
    SessionClosed,
    SessionGone,
    Sessionizer,
    SessionOpened,
    _keep_alive,
    keepalive_step,
    replay_session,
    replayed_requests,
)
from tests.support.fixtures import (
    ICECAST_25,
    ICECAST_KH,
    access_log_entries,
    captured_at,
    live_observations,
)

SRC = "main"
A = "2026-11-26T12:00:00+0000"
B = "2026-11-26T13:00:00+0000"


def listener(cid: str, connected: int, ip: str = "10.0.0.1", ua: str = "VLC/3.0") -> Listener:
    return Listener(cid, ip, ua, connected)


def poll(at: int, *listeners: Listener, mount: str = "/live", instance: str = A) -> MountPolled:
    return MountPolled(SRC, at, instance, mount, ListenerList(listeners))


def seen(at: int, *mounts: str, instance: str = A) -> SourceSeen:
    return SourceSeen(SRC, at, instance, frozenset(mounts))


def brief(event: Event) -> tuple[object, ...]:
    cid = event.session.client_id
    if isinstance(event, SessionStarted):
        return ("start", cid, event.at)
    if isinstance(event, SessionKeptAlive):
        return ("alive", cid, event.at, event.previous_at)
    assert isinstance(event, SessionEnded)
    return ("end", cid, event.at, event.reason.value)


def run(observations: Sequence[Observation], **options: int) -> list[tuple[object, ...]]:
    settings = {"keepalive_interval": 120, "outage_grace": 60, **options}
    sessionizer = Sessionizer(**settings)  # type: ignore[arg-type]
    return [brief(e) for o in observations for e in sessionizer.observe(o)]


CASES = {
    "join: starts at poll time minus Connected": (
        [poll(100, listener("1", 5))],
        [("start", "1", 95)],
    ),
    "stay: nothing before the keep-alive is due": (
        [poll(100, listener("1", 5)), poll(110, listener("1", 15)), poll(214, listener("1", 119))],
        [("start", "1", 95)],
    ),
    "stay: keep-alive at start + interval once a poll passes it": (
        [poll(100, listener("1", 5)), poll(210, listener("1", 115)), poll(220, listener("1", 125))],
        [("start", "1", 95), ("alive", "1", 215, 95)],
    ),
    "stay: second keep-alive counts from the first": (
        [poll(100, listener("1", 5)), poll(220, listener("1", 0)), poll(340, listener("1", 0))],
        [("start", "1", 95), ("alive", "1", 215, 95), ("alive", "1", 335, 215)],
    ),
    "leave: ends at the last poll that listed the listener": (
        [poll(100, listener("1", 5)), poll(110, listener("1", 15)), poll(120)],
        [("start", "1", 95), ("end", "1", 110, "left")],
    ),
    "leave after keep-alives: previous is the last keep-alive": (
        [poll(100, listener("1", 5)), poll(220, listener("1", 0)), poll(230)],
        [("start", "1", 95), ("alive", "1", 215, 95), ("end", "1", 220, "left")],
    ),
    "reconnect: a new id is a new session, the old one ends first": (
        [poll(100, listener("1", 5)), poll(110, listener("2", 3))],
        [("start", "1", 95), ("end", "1", 100, "left"), ("start", "2", 107)],
    ),
    "new listener never starts before the previous poll": (
        [poll(100), poll(110, listener("1", 11))],
        [("start", "1", 100)],
    ),
    "server restart: old sessions end at their last sighting, new ones start": (
        [
            seen(100, "/live"),
            poll(100, listener("5", 5)),
            seen(130, "/live", instance=B),
            poll(130, listener("2", 4), instance=B),
        ],
        [("start", "5", 95), ("end", "5", 100, "server_restarted"), ("start", "2", 126)],
    ),
    "server restart seen first in a mount poll": (
        [poll(100, listener("5", 5)), poll(130, listener("5", 4), instance=B)],
        [("start", "5", 95), ("end", "5", 100, "server_restarted"), ("start", "5", 126)],
    ),
    "outage shorter than the grace: the session goes on": (
        [poll(100, listener("1", 5)), Tick(150), Tick(160), poll(165, listener("1", 70))],
        [("start", "1", 95)],
    ),
    "outage shorter than the grace, keep-alives caught up": (
        [poll(100, listener("1", 5)), Tick(150), poll(230, listener("1", 135))],
        [("start", "1", 95), ("alive", "1", 215, 95)],
    ),
    "outage longer than the grace: ends at the last sighting": (
        [poll(100, listener("1", 5)), Tick(160), Tick(161), Tick(170)],
        [("start", "1", 95), ("end", "1", 100, "source_lost")],
    ),
    "back after the grace: the same listener resumes from the last sighting": (
        [poll(100, listener("1", 5)), Tick(161), poll(170, listener("1", 75))],
        [("start", "1", 95), ("end", "1", 100, "source_lost"), ("start", "1", 100)],
    ),
    "mount removed: its sessions end": (
        [seen(100, "/live"), poll(100, listener("1", 5)), seen(110)],
        [("start", "1", 95), ("end", "1", 100, "mount_removed")],
    ),
    "other mounts are untouched by a removal": (
        [
            seen(100, "/a", "/b"),
            poll(100, listener("1", 5), mount="/a"),
            poll(100, listener("2", 5), mount="/b"),
            seen(110, "/b"),
        ],
        [("start", "1", 95), ("start", "2", 95), ("end", "1", 100, "mount_removed")],
    ),
    "clock stepping back: the listeners' connected times tell how much time passed": (
        [poll(100, listener("1", 5)), poll(90, listener("1", 15)), poll(95)],
        [("start", "1", 95), ("end", "1", 110, "left")],
    ),
    "clock stepping back, connected times that say nothing: time stands still": (
        [poll(100, listener("1", 5)), poll(90, listener("1", -1)), poll(95)],
        [("start", "1", 95), ("end", "1", 100, "left")],
    ),
    "clock stepping back, nobody listening: the mount follows the clock": (
        [poll(100, listener("1", 5)), poll(105), poll(50, listener("2", 20))],
        [("start", "1", 95), ("end", "1", 100, "left"), ("start", "2", 30)],
    ),
    "clock stepping back: the outage grace counts in the mount's time": (
        [poll(100, listener("1", 5)), poll(50, listener("1", 15)), Tick(60), Tick(171)],
        [("start", "1", 95), ("end", "1", 110, "source_lost")],
    ),
    "long listener first seen: keep-alives of the past at once": (
        [poll(1000, listener("1", 400))],
        [
            ("start", "1", 600),
            ("alive", "1", 720, 600),
            ("alive", "1", 840, 720),
            ("alive", "1", 960, 840),
        ],
    ),
    "negative Connected is taken as zero": (
        [poll(100, listener("1", -50))],
        [("start", "1", 100)],
    ),
    "a keep-alive due at the very second of a poll": (
        [poll(100, listener("1", 5)), poll(214, listener("1", 119)), poll(215, listener("1", 0))],
        [("start", "1", 95), ("alive", "1", 215, 95)],
    ),
    "two keep-alives due at once: both, the second from the first": (
        [poll(100, listener("1", 5)), poll(335, listener("1", 0))],
        [("start", "1", 95), ("alive", "1", 215, 95), ("alive", "1", 335, 215)],
    ),
    "a second keep-alive not quite due: one": (
        [poll(100, listener("1", 5)), poll(334, listener("1", 0))],
        [("start", "1", 95), ("alive", "1", 215, 95)],
    ),
    "a joined listener's keep-alives count from its join": (
        [
            poll(100),
            ListenerJoined(SRC, 105, "/live", "1", "10.0.0.1", "VLC/3.0"),
            poll(110, listener("1", 5)),
            poll(224, listener("1", 119)),
            poll(225, listener("1", 120)),
        ],
        [("start", "1", 105), ("alive", "1", 225, 105)],
    ),
}


@pytest.mark.parametrize(("observations", "expected"), CASES.values(), ids=CASES.keys())
def test_transitions(observations: list[Observation], expected: list[tuple[object, ...]]) -> None:
    assert run(observations) == expected


def restarted(sessionizer: Sessionizer, min_session: int) -> Sessionizer:
    """A sessionizer rebuilt from what the store keeps of `sessionizer` (no exact ends)."""
    return Sessionizer(
        keepalive_interval=120,
        outage_grace=60,
        min_session=min_session,
        mounts=sessionizer.mount_records(),
        sessions=list(sessionizer.sessions()),
        instances=sessionizer.instances(),
    )


def crowd_polls() -> list[Observation]:
    """Polls every 10 s of listeners coming and going, with a gap of two keep-alive intervals."""
    observations: list[Observation] = []
    connected: dict[str, int] = {str(n): 100 - 7 * n for n in range(12)}
    for at in [*range(100, 400, 10), *range(650, 800, 10)]:
        if at % 30 == 0:
            connected.pop(min(connected, key=int), None)
            connected[str(at)] = at - 3
        listed = [listener(c, at - since) for c, since in connected.items()]
        observations.append(poll(at, *listed))
    return observations


@pytest.mark.parametrize("min_session", [0, 30])
def test_looking_only_at_new_and_due_listeners_misses_nothing(min_session: int) -> None:
    """A sessionizer polled without a break looks at the listeners that are new or due; one
    rebuilt from its store before each poll looks at every listener. Both say the same."""
    steady = Sessionizer(keepalive_interval=120, outage_grace=60, min_session=min_session)
    afresh = steady
    caught_up = set()
    for observation in crowd_polls():
        afresh = restarted(afresh, min_session)
        expected = afresh.observe(observation)
        assert steady.observe(observation) == expected
        assert sorted(steady.sessions(), key=str) == sorted(afresh.sessions(), key=str)
        alive = [e.session.client_id for e in expected if isinstance(e, SessionKeptAlive)]
        caught_up |= {c for c in alive if alive.count(c) > 1}
    assert caught_up  # after the gap, some got two keep-alives at once


def test_catchup_keepalives_are_thinned_but_keep_the_gap() -> None:
    events = run([poll(10_000, listener("1", 7200))], catchup_gap=1799)
    times = [e[2] for e in events]
    assert times[0] == 2800
    assert times[-1] == 2800 + 60 * 120  # the last multiple of the interval is always sent
    gaps = [b - a for a, b in itertools.pairwise(times)]  # type: ignore[operator]
    assert max(gaps) <= 1799
    assert len(events) < 10
    # previous_at chains through the keep-alives actually sent
    assert all(e[3] == p[2] for p, e in itertools.pairwise(events))


def walked_keep_alives(
    session: Session, previous: int, at: int, interval: int, catchup: int
) -> list[tuple[int, int]]:
    """The thinned keep-alives found interval by interval: what `_keep_alive` works out."""
    start = session.started_at
    last_due = start + (at - start) // interval * interval
    sent: list[tuple[int, int]] = []
    due = previous + interval
    while due < last_due:
        if due + interval - previous > catchup:
            sent.append((due, previous))
            previous = due
        due += interval
    if last_due > previous:
        sent.append((last_due, previous))
    return sent


@pytest.mark.parametrize("interval", [1, 7, 60, 120, 1799])
@pytest.mark.parametrize("catchup", [1, 120, 239, 240, 241, 1799, 3600])
@pytest.mark.parametrize(
    ("start", "previous", "at"),
    [(0, 0, 0), (0, 0, 119), (0, 0, 120), (50, 50, 10_000), (50, 290, 10_000), (-7, -7, 200_000)],
)
def test_keep_alives_worked_out_are_those_walked(
    interval: int, catchup: int, start: int, previous: int, at: int
) -> None:
    catchup = max(interval, catchup)  # as the sessionizer and replay_session make it
    session = Session(SRC, A, "/live", "7", "10.0.0.1", "VLC", "", start, 0)
    events: list[Event] = []
    _keep_alive(session, previous, at, interval, catchup, events)
    got = [(e.at, e.previous_at) for e in events if isinstance(e, SessionKeptAlive)]
    assert len(got) == len(events)
    assert got == walked_keep_alives(session, previous, at, interval, catchup)


@pytest.mark.parametrize("interval", [1, 7, 60, 1500])
@pytest.mark.parametrize("catchup_gap", [None, 0, 59, 60, 1799, 3600])
@pytest.mark.parametrize("seconds", [0, 1, 6, 7, 59, 60, 61, 1799, 1800, 1801, 10_801, 200_000])
def test_replayed_requests_counts_what_replay_session_gives(
    interval: int, catchup_gap: int | None, seconds: int
) -> None:
    session = Session(SRC, A, "/live", "7", "10.0.0.1", "VLC", "", 1_000, 0)
    events = replay_session(
        session, 1_000 + seconds, keepalive_interval=interval, catchup_gap=catchup_gap
    )
    step = keepalive_step(interval, catchup_gap)
    assert replayed_requests(seconds, interval, step) == len(events)


def test_slots_tell_identical_listeners_apart_and_are_reused() -> None:
    s = Sessionizer(keepalive_interval=120, outage_grace=60)
    started = s.observe(poll(100, listener("1", 1), listener("2", 1)))
    assert [e.session.slot for e in started] == [0, 1]
    events = s.observe(poll(110, listener("2", 11), listener("3", 1)))
    assert [(brief(e), e.session.slot) for e in events] == [
        (("end", "1", 100, "left"), 0),
        (("start", "3", 109), 0),
    ]
    other = s.observe(poll(120, listener("2", 21), listener("3", 11), listener("4", 1, ip="x")))
    assert [(brief(e), e.session.slot) for e in other] == [(("start", "4", 119), 0)]


STORED = Session(SRC, A, "/live", "7", "10.0.0.1", "VLC", "", 95, 0)


def restored(resumed_at: int | None = None) -> Sessionizer:
    """As restarted from a store holding one session, last polled at 200."""
    return Sessionizer(
        keepalive_interval=120,
        outage_grace=60,
        mounts=[MountRecord(SRC, A, "/live", 200)],
        sessions=[STORED],
        resumed_at=resumed_at,
    )


def test_resumes_from_stored_state_without_a_second_start() -> None:
    s = restored()
    assert [brief(e) for e in s.observe(poll(250, listener("7", 155)))] == [("alive", "7", 215, 95)]
    assert [brief(e) for e in s.observe(poll(340, listener("7", 245)))] == [
        ("alive", "7", 335, 215)
    ]
    assert [brief(e) for e in s.observe(poll(350))] == [("end", "7", 340, "left")]
    assert s.mount_records() == [MountRecord(SRC, A, "/live", 350)]


def test_resume_ends_sessions_gone_while_stopped_at_their_last_sighting() -> None:
    (ended,) = restored().observe(poll(5000))
    assert isinstance(ended, SessionEnded)
    assert (ended.at, ended.previous_at, ended.reason) == (200, 95, EndReason.LEFT)


def test_after_a_long_stop_the_grace_counts_from_the_restart() -> None:
    """Stopped from 200 to 5000 with a grace of 60 s: the ticks before the first poll leave
    the session alone, and the listener found still there stays one visit."""
    s = restored(resumed_at=5000)
    assert s.observe(Tick(5001)) == []
    assert s.observe(Tick(5060)) == []
    events = s.observe(poll(5010, listener("7", 4915)))
    assert {type(e) for e in events} == {SessionKeptAlive}
    assert events[-1].at == 95 + 40 * 120


def test_a_source_still_silent_after_a_restart_loses_its_sessions_after_the_grace() -> None:
    s = restored(resumed_at=5000)
    assert [brief(e) for e in s.observe(Tick(5061))] == [("end", "7", 200, "source_lost")]


def test_stored_session_without_its_mount_is_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        Sessionizer(keepalive_interval=120, outage_grace=60, sessions=[STORED])


def test_per_source_grace() -> None:
    s = Sessionizer(keepalive_interval=120, outage_grace=60, source_graces={SRC: 600})
    s.observe(poll(100, listener("1", 5)))
    assert s.observe(Tick(650)) == []
    assert [brief(e) for e in s.observe(Tick(701))] == [("end", "1", 100, "source_lost")]


def test_durations_add_up() -> None:
    s = Sessionizer(keepalive_interval=120, outage_grace=60)
    events: list[Event] = []
    for at in range(100, 1000, 10):
        events += s.observe(poll(at, listener("1", at - 95)))
    events += s.observe(poll(1000))
    listened = sum(e.at - e.previous_at for e in events if not isinstance(e, SessionStarted))
    end = events[-1]
    assert isinstance(end, SessionEnded)
    assert listened == end.duration == 990 - 95


MIN_SESSION_CASES = {
    "shorter than min_session: nothing at all": (
        [poll(100, listener("1", 5)), poll(130, listener("1", 35)), poll(140)],
        [],
    ),
    "held back, then started with its real start": (
        [
            poll(100, listener("1", 5)),
            poll(150, listener("1", 55)),
            poll(160, listener("1", 65)),
            poll(220, listener("1", 125)),
            poll(230),
        ],
        [
            ("start", "1", 95),
            ("alive", "1", 215, 95),
            ("end", "1", 220, "left"),
        ],
    ),
    "held back, then a gap past its first keep-alive: started first": (
        [poll(100, listener("1", 5)), poll(220, listener("1", 125))],
        [("start", "1", 95), ("alive", "1", 215, 95)],
    ),
    "long enough at first sight": (
        [poll(1000, listener("1", 400))],
        [
            ("start", "1", 600),
            ("alive", "1", 720, 600),
            ("alive", "1", 840, 720),
            ("alive", "1", 960, 840),
        ],
    ),
    "ends exactly at min_session: counted": (
        [poll(100, listener("1", 0)), poll(160, listener("1", 60)), poll(170)],
        [("start", "1", 100), ("end", "1", 160, "left")],
    ),
    "lost before min_session: nothing": (
        [poll(100, listener("1", 5)), Tick(500)],
        [],
    ),
}


@pytest.mark.parametrize(
    ("observations", "expected"), MIN_SESSION_CASES.values(), ids=MIN_SESSION_CASES.keys()
)
def test_min_session(observations: list[Observation], expected: list[tuple[object, ...]]) -> None:
    assert run(observations, min_session=60) == expected


def test_held_back_sessions_are_still_stored() -> None:
    s = Sessionizer(keepalive_interval=120, outage_grace=60, min_session=60)
    assert s.observe(poll(100, listener("1", 5))) == []
    (opened,) = s.take_changes()
    assert isinstance(opened, SessionOpened)
    assert opened.session.started_at == 95
    assert s.observe(poll(110)) == []
    assert [type(c) for c in s.take_changes()] == [SessionClosed]


def test_admit_leaves_out_and_corrects_listeners_once() -> None:
    calls: list[str] = []

    def admit(source: str, candidate: Listener) -> Listener | None:
        calls.append(candidate.client_id)
        if candidate.user_agent.startswith("Liquidsoap"):
            return None
        return candidate._replace(ip="198.51.100.7")

    s = Sessionizer(keepalive_interval=120, outage_grace=60, admit=admit)
    relay = listener("1", 5, ua="Liquidsoap/2.2")
    (started,) = s.observe(poll(100, relay, listener("2", 5)))
    assert (started.session.client_id, started.session.ip) == ("2", "198.51.100.7")
    assert s.observe(poll(110, relay, listener("2", 15))) == []
    assert calls == ["1", "2"]
    s.observe(poll(120, listener("2", 25)))
    s.observe(poll(130, relay, listener("2", 35)))  # a left-out id seen again after a gap
    assert calls == ["1", "2", "1"]


def left(
    at: int, duration: int, client_id: str = "", ip: str = "10.0.0.1", ua: str = "VLC/3.0"
) -> ListenerLeft:
    return ListenerLeft(SRC, at, "/live", duration, client_id, ip, ua)


LONG_UA = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 " + "InAppBrowser/1.0 " * 10
SPLIT_UA = "p" * 149 + "é and more"
SPLIT_CUT = "p" * 149 + "\ufffd"
NOT_UTF8 = "Player M\ufffdller/1.0"


EXACT_CASES = {
    "joined a second after the server's connect time: lasts the seconds the server measured": (
        [
            poll(100),
            ListenerJoined(SRC, 103, "/live", "9", "10.0.0.1", "VLC/3.0"),
            left(109, 7, client_id="9"),
        ],
        [("start", "9", 103), ("end", "9", 110, "left")],
    ),
    "a notice whose start is far from the session's ends it at the notice's time": (
        [poll(100, listener("1", 5)), poll(110), left(107, 2, client_id="1")],
        [("start", "1", 95), ("end", "1", 107, "left")],
    ),
    "missing from a poll: waits, then the log line gives the exact end": (
        [poll(100, listener("1", 5)), poll(110), left(107, 12)],
        [("start", "1", 95), ("end", "1", 107, "left")],
    ),
    "no exact end comes: ends at the last sighting once the wait is over": (
        [poll(100, listener("1", 5)), poll(110), Tick(124), Tick(125)],
        [("start", "1", 95), ("end", "1", 100, "left")],
    ),
    "exact end by client id before the poll notices; the poll does not restart it": (
        [poll(100, listener("1", 5)), left(105, 10, client_id="1"), poll(110, listener("1", 15))],
        [("start", "1", 95), ("end", "1", 105, "left")],
    ),
    "a late notice after the wait never counts a session twice": (
        [poll(100, listener("1", 5)), poll(110), Tick(125), left(130, 35)],
        [("start", "1", 95), ("end", "1", 100, "left")],
    ),
    "a log line matches the session with the nearest start": (
        [
            poll(100, listener("1", 50), listener("2", 5)),
            poll(110),
            left(108, 13),
            left(109, 59),
        ],
        [
            ("start", "1", 50),
            ("start", "2", 95),
            ("end", "2", 108, "left"),
            ("end", "1", 109, "left"),
        ],
    ),
    "shorter than a poll interval: the whole session from the log line": (
        [poll(100), left(104, 3, ip="10.0.0.9")],
        [("start", "log:101:10.0.0.9", 101), ("end", "log:101:10.0.0.9", 104, "left")],
    ),
    "a log that does not name the mount matches across the source's mounts": (
        [
            poll(100, listener("1", 5), mount="/a"),
            poll(100, listener("2", 5, ip="10.0.0.2"), mount="/b"),
            poll(110, mount="/b"),
            ListenerLeft(SRC, 107, "", 12, "", "10.0.0.2", "VLC/3.0"),
        ],
        [("start", "1", 95), ("start", "2", 95), ("end", "2", 107, "left")],
    ),
    "joined: starts at the moment it connected, then polls find it": (
        [
            poll(100),
            ListenerJoined(SRC, 103, "/live", "9", "10.0.0.1", "VLC/3.0", query="utm_campaign=x"),
            poll(110, listener("9", 7)),
            left(115, 12, client_id="9"),
        ],
        [("start", "9", 103), ("end", "9", 115, "left")],
    ),
    # Players as the servers log them: Icecast-KH cuts them at 150 bytes; Icecast 2.5's \xNN
    # escapes are decoded by the parser; a player that is not UTF-8 is left out of KH's listing
    # and listed empty by 2.5, while the log has its bytes (read as U+FFFD).
    "KH's log cuts the player at 150 bytes: the whole one listed matches": (
        [poll(100, listener("1", 5, ua=LONG_UA)), poll(110), left(107, 12, ua=LONG_UA[:150])],
        [("start", "1", 95), ("end", "1", 107, "left")],
    ),
    "a cut inside a character (read as U+FFFD) matches too": (
        [poll(100, listener("1", 5, ua=SPLIT_UA)), poll(110), left(107, 12, ua=SPLIT_CUT)],
        [("start", "1", 95), ("end", "1", 107, "left")],
    ),
    "a shorter player that merely starts like the listed one is another player": (
        [poll(100, listener("1", 5, ua="VLC/3.0 LibVLC/3.0")), poll(110), left(104, 3), Tick(126)],
        [
            ("start", "1", 95),
            ("start", "log:101:10.0.0.1", 101),
            ("end", "log:101:10.0.0.1", 104, "left"),
            ("end", "1", 100, "left"),
        ],
    ),
    "a player the listing could not show matches a session listed without one": (
        [poll(100, listener("1", 5, ua="")), poll(110), left(107, 12, ua=NOT_UTF8)],
        [("start", "1", 95), ("end", "1", 107, "left")],
    ),
    "a player the listing could show does not match a session listed without one": (
        [poll(100, listener("1", 5, ua="")), poll(110), left(104, 3), Tick(126)],
        [
            ("start", "1", 95),
            ("start", "log:101:10.0.0.1", 101),
            ("end", "log:101:10.0.0.1", 104, "left"),
            ("end", "1", 100, "left"),
        ],
    ),
    "a session of the same player comes before one listed without a player": (
        [
            poll(100, listener("1", 5, ua=""), listener("2", 5, ua=NOT_UTF8)),
            left(107, 12, ua=NOT_UTF8),
        ],
        [("start", "1", 95), ("start", "2", 95), ("end", "2", 107, "left")],
    ),
    "joined on a mount never polled: the first poll starts it": (
        [
            ListenerJoined(SRC, 103, "/live", "9", "10.0.0.1", "VLC/3.0"),
            poll(110, listener("9", 7)),
        ],
        [("start", "9", 103)],
    ),
}


@pytest.mark.parametrize(("observations", "expected"), EXACT_CASES.values(), ids=EXACT_CASES.keys())
def test_exact_ends(observations: list[Observation], expected: list[tuple[object, ...]]) -> None:
    assert run(observations, exact_ends={SRC: 15}) == expected  # type: ignore[arg-type]


def test_joined_session_keeps_its_query_and_waits_are_stored() -> None:
    s = Sessionizer(keepalive_interval=120, outage_grace=60, exact_ends={SRC: 15})
    s.observe(poll(100))
    (started,) = s.observe(
        ListenerJoined(SRC, 103, "/live", "9", "10.0.0.1", "VLC/3.0", query="utm_source=app")
    )
    assert started.session.query == "utm_source=app"
    s.take_changes()
    assert s.observe(poll(110)) == []
    (gone,) = s.take_changes()
    assert isinstance(gone, SessionGone)
    assert gone.last_seen == 100


def test_a_stored_wait_resumes_after_a_restart() -> None:
    s = Sessionizer(
        keepalive_interval=120,
        outage_grace=60,
        exact_ends={SRC: 15},
        mounts=[MountRecord(SRC, A, "/live", 300)],
        sessions=[STORED],
        gone={STORED.key: 200},
    )
    assert [brief(e) for e in s.observe(left(205, 110, client_id="7"))] == [
        ("end", "7", 205, "left")
    ]


# -- the Icecast-KH and 2.5 captures: listings and the access log of the same listeners ----------


@pytest.mark.parametrize("folder", [ICECAST_KH, ICECAST_25], ids=["kh", "2.5"])
def test_each_captured_listener_is_counted_once_and_ends_as_its_log_line_says(
    folder: Path,
) -> None:
    """The listings and the log lines of /live.mp3, in time order: every session is one log
    line's connection, from its start to its end; those that were listed keep the player the
    listing showed (KH cut the long one in its log, 2.5 escaped quotes and UTF-8, neither could
    list the Latin-1 one)."""
    observations = [*live_observations(folder, SRC), Tick(captured_at("23:00:00"))]
    sessionizer = Sessionizer(keepalive_interval=120, outage_grace=60, exact_ends={SRC: 30})
    events = [e for o in observations for e in sessionizer.observe(o)]

    lines = [entry for entry in access_log_entries(folder) if entry.path == "/live.mp3"]
    starts = {e.session: e.at for e in events if isinstance(e, SessionStarted)}
    ends = {e.session: e.at for e in events if isinstance(e, SessionEnded)}
    assert len(starts) == len(lines) == 10
    assert sorted((s.ip, starts[s], ends[s]) for s in starts) == sorted(
        (entry.ip, entry.start, entry.end) for entry in lines
    )
    listed = {
        (listener.ip, listener.user_agent)
        for o in observations
        if isinstance(o, MountPolled)
        for listener in decode_all(o.listeners)
    }
    polled = [s for s in starts if not s.client_id.startswith("log:")]
    assert len(polled) == 8
    assert all((s.ip, s.user_agent) in listed for s in polled)
