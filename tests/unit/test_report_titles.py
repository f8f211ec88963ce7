"""`--by title` against a brute-force reference that walks every second of every play."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audimeter.reports.metrics import collect, report
from audimeter.reports.periods import quarter_grid
from audimeter.reports.titles import PlayRow, title_rows

Session = tuple[int, int, str, str]  # start, seconds, visitor, mount key
MOUNTS = ("main\x1f/a", "main\x1f/b")
TITLES = ("Artist - One", "Two", "Three")


def brute_force(
    sessions: list[Session], plays: list[PlayRow], min_session: int
) -> dict[str, dict[str, Any]]:
    """Each number by its definition: seconds walked one by one, sessions checked one by one."""
    rows: dict[str, dict[str, Any]] = {}
    for mount, title, a, b in plays:
        mine = [(s, s + n) for s, n, _, m in sessions if m == mount and n >= min_session]
        row = rows.setdefault(
            title,
            dict.fromkeys(("plays", "airtime", "seconds", "sessions", "at_start", "tune_outs"), 0),
        )
        row["plays"] += 1
        row["airtime"] += b - a
        row["seconds"] += sum(1 for t in range(a, b) for s, e in mine if s <= t < e)
        row["sessions"] += sum(1 for s, _ in mine if a <= s < b)
        row["at_start"] += sum(1 for s, e in mine if s <= a < e)
        row["tune_outs"] += sum(1 for _, e in mine if a < e <= b)
    return {
        title: {
            "plays": row["plays"],
            "airtime": row["airtime"],
            "seconds": row["seconds"],
            "tlh": row["seconds"] / 3600,
            "aas": row["seconds"] / row["airtime"] if row["airtime"] else 0.0,
            "sessions": row["sessions"],
            "listeners_at_start": row["at_start"],
            "avg_listeners_at_start": row["at_start"] / row["plays"],
            "tune_outs": row["tune_outs"],
            "tune_out_rate": row["tune_outs"] / row["at_start"] if row["at_start"] else 0.0,
        }
        for title, row in rows.items()
    }


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Session], list[PlayRow], int]:
    """Sessions on two mounts, and each mount's plays back to back with gaps (nothing on air),
    titles that come back, zero-length plays, sessions ending exactly at a play's start or end."""
    span = 3000
    sessions = [
        (
            draw(st.integers(0, span)),
            draw(st.sampled_from([0, 1, 59, 60, 300]) | st.integers(0, 1500)),
            draw(st.sampled_from("abc")),
            draw(st.sampled_from(MOUNTS)),
        )
        for _ in range(draw(st.integers(0, 25)))
    ]
    plays: list[PlayRow] = []
    for mount in MOUNTS:
        at = draw(st.integers(0, 200))
        for _ in range(draw(st.integers(0, 8))):
            length = draw(st.sampled_from([0, 1]) | st.integers(0, 600))
            plays.append((mount, draw(st.sampled_from(TITLES)), at, at + length))
            at += length + draw(st.sampled_from([0, 0, 0, 30]))
    # Sessions that end exactly where a play starts or ends.
    for mount, _, a, b in plays[: draw(st.integers(0, 3))]:
        sessions.append((max(0, a - 100), a - max(0, a - 100), "d", mount))
        sessions.append((a, b - a, "e", mount))
    return sessions, plays, draw(st.sampled_from([1, 60]))


@settings(max_examples=100, deadline=None)
@given(histories())
def test_titles_match_brute_force(history: tuple[list[Session], list[PlayRow], int]) -> None:
    sessions, plays, min_session = history
    rows = title_rows(collect([sessions]), plays, min_session)
    expected = brute_force(sessions, plays, min_session)
    assert {title for title, _ in rows} == set(expected)
    for title, metrics in rows:
        assert asdict(metrics) == pytest.approx(expected[title]), title
    keys = [(-m.seconds, -m.airtime, title) for title, m in rows]
    assert keys == sorted(keys)  # the most listened to first


def test_a_worked_example() -> None:
    # One mount; "One" plays 0-200 and again 400-500, "Two" 200-400.
    plays = [(MOUNTS[0], "One", 0, 200), (MOUNTS[0], "Two", 200, 400), (MOUNTS[0], "One", 400, 500)]
    sessions = [
        (0, 300, "a", MOUNTS[0]),  # through One into Two: tunes out during Two
        (100, 100, "b", MOUNTS[0]),  # ends exactly as One ends: a tune-out of One
        (450, 600, "c", MOUNTS[0]),  # starts during the second One
        (0, 30, "d", MOUNTS[0]),  # too short to count
        (0, 500, "e", MOUNTS[1]),  # another mount
    ]
    rows = dict(title_rows(collect([sessions]), plays, 60))
    one, two = rows["One"], rows["Two"]
    assert (one.plays, one.airtime, one.seconds) == (2, 300, 200 + 100 + 50)
    assert (one.listeners_at_start, one.tune_outs, one.sessions) == (1, 1, 3)
    assert one.tune_out_rate == 1.0
    assert one.aas == 350 / 300
    assert (two.plays, two.airtime, two.seconds, two.listeners_at_start) == (1, 200, 100, 1)
    assert (two.tune_outs, two.tune_out_rate, two.sessions) == (1, 1.0, 0)


def test_report_by_title_keeps_the_period_totals() -> None:
    grid = quarter_grid(date(2024, 5, 1), date(2024, 5, 1), ZoneInfo("UTC"))
    start = grid.start
    sessions = collect([[(start + 10, 600, "a", MOUNTS[0]), (start + 86_000, 900, "b", MOUNTS[0])]])
    plain = report(sessions, grid, min_session=60)
    titled = report(
        sessions, grid, min_session=60, by="title", plays=[(MOUNTS[0], "T", start, start + 100)]
    )
    assert titled.totals == plain.totals  # a session read past the period's end changes nothing
    assert titled.rows == []
    [(title, numbers)] = titled.titles
    assert (title, numbers.seconds, numbers.sessions) == ("T", 90, 1)
