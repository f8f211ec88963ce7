"""The streaming import plan gives the whole-file plan's sessions, slots and per-visitor order."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audimeter import importer
from audimeter.config import Config, parse_config
from audimeter.events import Event, Session, SessionStarted
from audimeter.importer import (
    Counts,
    Listen,
    PlanSetup,
    ReplaySettings,
    first_lines,
    lines_text,
    new_session,
    plan_lines,
    survey,
)
from audimeter.sessionizer import replay_session

T0 = 1_795_046_400
AGENTS = ("VLC/3.0.20 LibVLC/3.0.20", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Firefox/120.0")
SOURCE = {"name": "main", "kind": "icecast", "url": "http://radio.example.org:8000"}


def config(min_session: int = 0) -> Config:
    return parse_config(
        {
            "matomo": {"url": "https://m.example.org/", "site_id": 1, "token_auth": "x" * 32},
            "sources": [{**SOURCE, "password": "x"}],
            "filters": {"min_session": min_session},
        }
    )


def line(ip: str, agent: str, end: int, duration: int, path: str = "/live.mp3") -> str:
    clf = datetime.fromtimestamp(end, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - - [{clf}] "GET {path} HTTP/1.1" 200 4096 "-" "{agent}" {duration}'


# -- the whole-file plan, as import planned before it streamed ------------------------------------


def whole_file_slots(listens: Sequence[Listen]) -> list[int]:
    slots = [0] * len(listens)
    groups: dict[tuple[str, str], list[int]] = {}
    for index, listen in enumerate(listens):
        groups.setdefault((listen.ip, listen.user_agent), []).append(index)
    for indices in groups.values():
        indices.sort(key=lambda i: (listens[i].start, listens[i].end, listens[i].line))
        busy: list[tuple[int, int]] = []
        free: list[int] = []
        fresh = 0
        for index in indices:
            while busy and busy[0][0] <= listens[index].start:
                heapq.heappush(free, heapq.heappop(busy)[1])
            if free:
                slot = heapq.heappop(free)
            else:
                slot, fresh = fresh, fresh + 1
            slots[index] = slot
            heapq.heappush(busy, (listens[index].end, slot))
    return slots


def request_time(event: Event) -> int:
    start = event.session.started_at
    return start if isinstance(event, SessionStarted) else max(start, event.at - 1)


def whole_file_plan(lines: Sequence[str], conf: Config) -> list[Event]:
    """Every session's events, the sessions in `Listen` order (start, end, line)."""
    setup = PlanSetup.from_config(conf, conf.sources[0])
    listens = list(setup.listens((lines_text(lines),), Counts()))
    settings = ReplaySettings.from_config(conf)
    events: list[Event] = []
    slotted = sorted(zip(listens, whole_file_slots(listens), strict=True))
    for listen, slot in slotted:
        session = Session(
            "main",
            "import:kkkkkkkkkkkkkkkk",
            listen.mount,
            str(listen.line),
            listen.ip,
            listen.user_agent,
            listen.referrer,
            listen.start,
            slot,
        )
        events += replay_session(
            session,
            listen.end,
            keepalive_interval=settings.keepalive_interval,
            catchup_gap=settings.catchup_gap,
            min_session=settings.min_session,
        )
    return events


def by_visitor(events: Sequence[Event]) -> dict[tuple[str, str, int], list[Event]]:
    visitors: dict[tuple[str, str, int], list[Event]] = {}
    for event in events:
        s = event.session
        visitors.setdefault((s.ip, s.user_agent, s.slot), []).append(event)
    return visitors


# -- generated logs -------------------------------------------------------------------------------

connection = st.tuples(
    st.sampled_from(("192.0.2.1", "192.0.2.2", "2001:db8::1")),
    st.sampled_from(AGENTS),
    st.integers(0, 3000),  # end, seconds after T0
    st.one_of(st.integers(0, 200), st.integers(0, 3000)),  # seconds connected
)


@st.composite
def logs(draw: st.DrawFn) -> list[str]:
    """Lines mostly in the order of their ends, as servers write them, some out of order."""
    connections = draw(st.lists(connection, max_size=60))
    connections.sort(key=lambda c: c[2])
    swaps = draw(st.lists(st.tuples(st.integers(0, 59), st.integers(0, 59)), max_size=5))
    for a, b in swaps:
        if a < len(connections) and b < len(connections):
            connections[a], connections[b] = connections[b], connections[a]
    lines = [line(ip, agent, T0 + end, duration) for ip, agent, end, duration in connections]
    for at, cut in draw(st.lists(st.tuples(st.integers(0, 59), st.integers(0, 120)), max_size=3)):
        if at < len(lines):  # a line cut short, as a full disk or a crash leaves it
            lines.insert(at, lines[at][:cut])
    return lines


@settings(max_examples=150, deadline=None)
@given(
    lines=logs(),
    block=st.sampled_from((1, 2, 3, 8, 1024)),
    long=st.sampled_from((0, 30, 500, 10**9)),
    min_session=st.sampled_from((0, 1, 60)),
)
def test_the_streaming_plan_is_the_whole_file_plan(
    lines: list[str], block: int, long: int, min_session: int
) -> None:
    conf = config(min_session)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(importer, "BLOCK", block)
        patch.setattr(importer, "LONG", long)
        counts = Counts()
        streamed = list(
            plan_lines(lines, config=conf, source=conf.sources[0], key="k" * 64, counts=counts)
        )
    expected = whole_file_plan(lines, conf)
    assert sorted(map(repr, streamed)) == sorted(map(repr, expected))
    assert by_visitor(streamed) == by_visitor(expected)
    for visitor in by_visitor(streamed).values():  # what Matomo needs: each in time order
        times = list(map(request_time, visitor))
        assert times == sorted(times)
    assert counts.requests == len(expected)
    assert counts.lines == len(lines)


def test_sessions_are_sent_while_the_log_is_still_being_read() -> None:
    """A day of short sessions, one line every 10 s: each session's events leave the plan
    within a few blocks of lines, not at the end of the file."""
    conf = config()
    lines = [line(f"198.51.100.{n % 200}", AGENTS[n % 2], T0 + 10 * n, 60) for n in range(8640)]
    setup = PlanSetup.from_config(conf, conf.sources[0])
    found = survey((lines_text(lines),), setup, Counts())
    read = 0

    def reading() -> Iterator[str]:
        nonlocal read
        for text in lines:
            read += 1
            yield text + "\n"

    counts = Counts()
    lag = 0
    for event in setup.events(found, setup.listens(reading(), counts), key="k" * 64, counts=counts):
        lag = max(lag, read - int(event.session.client_id))
    assert counts.sessions == len(lines)
    assert lag <= 2 * importer.BLOCK


def test_a_visitors_sessions_at_one_time_go_whole_by_end_then_line() -> None:
    """A visitor's sessions at the same second go one after the other, whole, as when the
    whole file was sorted by start, end and line: here a session that starts as a look-alike's
    zero-second one ends, whose line comes later (a log not quite in the order of ends)."""
    conf = config()
    lines = [
        line("192.0.2.1", AGENTS[0], T0 + 4000, 4000),
        line("192.0.2.1", AGENTS[0], T0, 0),
        *(line("192.0.2.9", AGENTS[0], T0 + 10 * n, 5) for n in range(1, 400)),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(importer, "BLOCK", 4)
        streamed = list(
            plan_lines(lines, config=conf, source=conf.sources[0], key="k" * 64, counts=Counts())
        )
    expected = whole_file_plan(lines, conf)
    first = by_visitor(streamed)[("192.0.2.1", AGENTS[0], 0)]
    assert [(type(e).__name__, e.session.client_id) for e in first[:3]] == [
        ("SessionStarted", "2"),
        ("SessionEnded", "2"),
        ("SessionStarted", "1"),
    ]
    assert by_visitor(streamed) == by_visitor(expected)


@pytest.mark.parametrize(
    "values",
    [
        ("main", "import:k", "/live.mp3", "17", "192.0.2.1", "VLC", "", T0, 0),
        ("a", "", "/", "0", "2001:db8::1", "", "https://example.org/", -5, 3),
    ],
)
def test_a_session_built_by_its_slots_is_the_dataclass_one(values: tuple[Any, ...]) -> None:
    built, made = new_session(*values), Session(*values)
    assert built == made
    assert repr(built) == repr(made)
    assert hash(built) == hash(made)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 9])
def test_first_lines_stops_after_the_lines_surveyed(count: int) -> None:
    texts = ["a\nb\n", "c\r\n", "d\ne\nf\n"]
    taken = "".join(first_lines(texts, count))
    assert taken.splitlines() == "".join(texts).splitlines()[:count]
    assert not taken or taken.endswith("\n")


@settings(max_examples=60, deadline=None)
@given(lines=logs(), block=st.sampled_from((1, 2, 3, 8)), piece=st.integers(1, 7))
def test_a_log_read_in_pieces_is_surveyed_and_scanned_as_a_whole(
    lines: list[str], block: int, piece: int
) -> None:
    """The file is read a megabyte at a time: where the pieces end changes nothing."""
    conf = config()
    setup = PlanSetup.from_config(conf, conf.sources[0])
    pieces = [lines_text(lines[at : at + piece]) for at in range(0, len(lines), piece)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(importer, "BLOCK", block)
        patch.setattr(importer, "LONG", 100)
        whole, cut = Counts(), Counts()
        assert survey(pieces, setup, cut) == survey((lines_text(lines),), setup, whole)
        assert list(setup.listens(pieces, cut)) == list(setup.listens((lines_text(lines),), whole))
    assert cut == whole
