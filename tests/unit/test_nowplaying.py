"""The title tracker as tables: observations in, play changes out."""

from __future__ import annotations

import pytest

from audimeter.nowplaying import Play, PlayChange, PlayEnded, PlayStarted, TitleTracker
from audimeter.observations import ListenerList, MountPolled, Observation, SourceSeen, Tick
from audimeter.sessionizer import MountRecord

SRC = "main"
A = "2026-11-26T12:00:00+0000"
B = "2026-11-26T13:00:00+0000"
GRACE = 60


def poll(at: int, title: str | None, mount: str = "/m", instance: str = A) -> MountPolled:
    return MountPolled(SRC, at, instance, mount, ListenerList([]), title)


def play(title: str, at: int, mount: str = "/m") -> Play:
    return Play(SRC, mount, title, at)


def started(title: str, at: int, mount: str = "/m") -> PlayStarted:
    return PlayStarted(play(title, at, mount))


def ended(title: str, start: int, at: int, mount: str = "/m") -> PlayEnded:
    return PlayEnded(play(title, start, mount), at)


CASES: dict[str, tuple[list[Observation], list[PlayChange]]] = {
    "a title starts at the first poll that shows it and goes on": (
        [poll(100, "A - T"), poll(110, "A - T"), poll(120, "A - T")],
        [started("A - T", 100)],
    ),
    "a change ends the play and starts the next at the poll that shows it": (
        [poll(100, "one"), poll(110, "two")],
        [started("one", 100), ended("one", 100, 110), started("two", 110)],
    ),
    "a title that comes back is a new play": (
        [poll(100, "one"), poll(110, "two"), poll(120, "one")],
        [
            started("one", 100),
            ended("one", 100, 110),
            started("two", 110),
            ended("two", 110, 120),
            started("one", 120),
        ],
    ),
    "no title ends the play and starts none": (
        [poll(100, "one"), poll(110, ""), poll(120, "")],
        [started("one", 100), ended("one", 100, 110)],
    ),
    "a source that cannot say changes nothing": (
        [poll(100, "one"), poll(110, None), poll(120, "one")],
        [started("one", 100)],
    ),
    "mounts are apart": (
        [poll(100, "one"), poll(100, "one", "/n"), poll(110, "two", "/n")],
        [
            started("one", 100),
            started("one", 100, "/n"),
            ended("one", 100, 110, "/n"),
            started("two", 110, "/n"),
        ],
    ),
    "a mount no longer listed ends at its last poll": (
        [poll(100, "one"), poll(110, "one"), SourceSeen(SRC, 120, A, frozenset())],
        [started("one", 100), ended("one", 100, 110)],
    ),
    "a silence longer than the grace ends at the last poll": (
        [poll(100, "one"), Tick(100 + GRACE), Tick(101 + GRACE), Tick(200)],
        [started("one", 100), ended("one", 100, 100)],
    ),
    "a poll after longer than the grace starts the title again": (
        [poll(100, "one"), poll(110, "one"), poll(111 + GRACE, "one")],
        [started("one", 100), ended("one", 100, 110), started("one", 111 + GRACE)],
    ),
    "a new server instance starts the title again": (
        [poll(100, "one"), poll(110, "one", instance=B)],
        [started("one", 100), ended("one", 100, 100), started("one", 110)],
    ),
    "a clock that steps back dates the change at the previous poll": (
        [poll(100, "one"), poll(90, "two")],
        [started("one", 100), ended("one", 100, 100), started("two", 100)],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_tracker(case: str) -> None:
    observations, expected = CASES[case]
    tracker = TitleTracker(outage_grace=GRACE)
    changes: list[PlayChange] = []
    for observation in observations:
        tracker.observe(observation)
        changes += tracker.take_changes()
    assert changes == expected


def test_restored_plays_go_on_or_end() -> None:
    tracker = TitleTracker(
        outage_grace=GRACE,
        plays=[play("one", 100), play("gone", 50, "/gone")],
        mounts=[MountRecord(SRC, A, "/m", 130)],
    )
    # A play without its mount's record cannot tell when it was last on air.
    assert tracker.take_changes() == [ended("gone", 50, 50, "/gone")]
    tracker.observe(poll(140, "one"))
    assert tracker.take_changes() == []
    tracker.observe(poll(150, "two"))
    assert tracker.take_changes() == [ended("one", 100, 150), started("two", 150)]


def test_a_restart_of_audimeter_longer_than_the_grace_ends_the_play_at_the_last_poll() -> None:
    tracker = TitleTracker(
        outage_grace=GRACE, plays=[play("one", 100)], mounts=[MountRecord(SRC, A, "/m", 130)]
    )
    tracker.observe(poll(131 + GRACE, "one"))
    assert tracker.take_changes() == [ended("one", 100, 130), started("one", 131 + GRACE)]
