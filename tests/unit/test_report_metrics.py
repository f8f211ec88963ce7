"""The report engine against a brute-force reference that walks every second of the period."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audimeter.reports.dayparts import DEFAULT_DAYPARTS, Daypart, parse_daypart, parse_dayparts
from audimeter.reports.metrics import buckets, collect, report
from audimeter.reports.periods import quarter_grid

Session = tuple[int, int, str, str]  # start, seconds, visitor, mount


def midnight(day: date, zone: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())


def wall(instant: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(instant, zone).replace(tzinfo=None)


def brute_force(
    sessions: list[Session],
    first: date,
    last: date,
    zone: ZoneInfo,
    min_session: int,
    by: str | None,
    dayparts: tuple[Daypart, ...],
) -> dict[str, Any]:
    """Every metric by its definition, second by second (offsets looked up every minute)."""
    t0, t1 = midnight(first, zone), midnight(last + timedelta(days=1), zone)
    n = t1 - t0
    minutes = np.arange(t0, t1, 60)
    # The offset as the local wall clock minus the UTC wall clock.
    offsets = np.array(
        [(wall(int(m), zone) - wall(int(m), UTC)) // timedelta(seconds=1) for m in minutes]
    )
    offset = np.repeat(offsets.astype(np.int64), 60)[:n]
    local = np.arange(t0, t1) + offset
    changed = np.concatenate([[True], offset[1:] != offset[:-1]])
    quarter = np.cumsum((local % 900 == 0) | changed) - 1
    local_day = local // 86400
    weekday = (local_day + 3) % 7
    minute = (local % 86400) // 60
    names = [name for name, _ in buckets(min_session)]
    lows = [low for _, low in buckets(min_session)]

    def metrics(mask: np.ndarray, chosen: list[Session]) -> dict[str, Any]:
        open_ = np.zeros(n, dtype=np.int64)
        covered: dict[str, np.ndarray] = {}
        started = short = active = seconds = 0
        durations = dict.fromkeys(names, 0)
        cume: set[str] = set()
        for start, length, visitor, _ in chosen:
            inside_period = t0 <= start < t1
            if length < min_session:
                short += inside_period and bool(mask[start - t0])
                continue
            if inside_period and mask[start - t0]:
                started += 1
                durations[names[max(i for i, low in enumerate(lows) if length >= low)]] += 1
            lo, hi = max(start, t0) - t0, min(start + length, t1) - t0
            if hi <= lo:
                continue
            here = int(mask[lo:hi].sum())
            seconds += here
            if here:
                active += 1
                cume.add(visitor)
            open_[lo:hi] += 1
            covered.setdefault(visitor, np.zeros(n, dtype=bool))[lo:hi] = True
        hours = mask.sum() / 3600
        slice_quarters = np.unique(quarter[mask])
        heard = np.zeros(quarter[-1] + 1, dtype=np.int64)
        for seconds_heard in covered.values():
            heard += np.bincount(quarter, weights=seconds_heard, minlength=len(heard)) >= 300
        peak = int(open_[mask].max()) if mask.any() and active else 0
        return {
            "sessions": started,
            "active_sessions": active,
            "seconds": seconds,
            "tlh": seconds / 3600,
            "aas": seconds / 3600 / hours if hours else 0.0,
            "atsl": seconds / active if active else 0.0,
            "cume": len(cume),
            "tsl": seconds / len(cume) if cume else 0.0,
            "aqh": float(heard[slice_quarters].mean()) if slice_quarters.size else 0.0,
            "peak": peak,
            "peak_at": t0 + int(np.flatnonzero(mask & (open_ == peak))[0]) if peak else None,
            "short_sessions": short,
            "durations": durations,
        }

    everything = np.ones(n, dtype=bool)
    masks: list[tuple[str, np.ndarray]] = []
    if by == "day":
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        masks = [(d.isoformat(), local_day == (d - date(1970, 1, 1)).days) for d in days]
    elif by == "hour":
        masks = [(f"{h:02d}:00", minute // 60 == h) for h in range(24)]
    elif by == "weekday":
        names_ = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
        masks = [(names_[w], weekday == w) for w in range(7)]
    elif by == "daypart":
        masks = [
            (p.name, np.isin(weekday, list(p.days)) & (minute >= p.start) & (minute < p.end))
            for p in dayparts
        ]
    # Rows are the slices that occur in the period.
    rows = [(key, metrics(mask, sessions)) for key, mask in masks if mask.any()]
    if by == "mount":
        for mount in sorted({x[3] for x in sessions}):
            rows.append((mount, metrics(everything, [x for x in sessions if x[3] == mount])))
    return {"totals": metrics(everything, sessions), "rows": rows}


def engine(
    sessions: list[Session],
    first: date,
    last: date,
    zone: ZoneInfo,
    min_session: int,
    by: str | None,
    dayparts: tuple[Daypart, ...],
) -> dict[str, Any]:
    grid = quarter_grid(first, last, zone)
    result = report(
        collect([[(s, n, v, m) for s, n, v, m in sessions]]),
        grid,
        min_session=min_session,
        by=by,
        dayparts=dayparts,
    )
    return {
        "totals": asdict(result.totals),
        "rows": [(key, asdict(m)) for key, m in result.rows],
    }


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    def check(g: dict[str, Any], w: dict[str, Any], where: str) -> None:
        for name, value in w.items():
            if isinstance(value, float):
                assert g[name] == pytest.approx(value, rel=1e-12, abs=1e-12), (where, name)
            else:
                assert g[name] == value, (where, name)

    check(got["totals"], want["totals"], "totals")
    assert [k for k, _ in got["rows"]] == [k for k, _ in want["rows"]]
    for (key, g), (_, w) in zip(got["rows"], want["rows"], strict=True):
        check(g, w, str(key))


# Periods around clock changes (and one without), in zones with 60, 30 and 0 minute changes and
# offsets that are not whole hours.
PERIODS = [
    ("Europe/Berlin", date(2024, 3, 30), 2),  # 23-hour day on the 31st
    ("Europe/Berlin", date(2024, 10, 27), 1),  # 25-hour day
    ("America/New_York", date(2024, 11, 2), 2),
    ("Australia/Lord_Howe", date(2024, 4, 7), 1),  # clocks go back 30 minutes
    ("Asia/Kolkata", date(2024, 6, 1), 1),  # +05:30
    ("UTC", date(2024, 2, 28), 2),
]
DAYPARTS = (
    *parse_dayparts(DEFAULT_DAYPARTS),
    parse_daypart("Odd", "Sat,Mon 01:45-03:15"),
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Session], str, date, date, int, str | None]:
    zone_name, first, days = draw(st.sampled_from(PERIODS))
    last = first + timedelta(days=days - 1)
    zone = ZoneInfo(zone_name)
    t0, t1 = midnight(first, zone), midnight(last + timedelta(days=1), zone)
    start = st.one_of(
        # On or near a quarter hour (so that exactly 300 s can fall inside one) ...
        st.builds(
            lambda q, d: t0 + q * 900 + d,
            st.integers(-8, (t1 - t0) // 900 + 4),
            st.sampled_from([0, 1, 300, 599, 600, 899]),
        ),
        # ... or anywhere, also before the period or running past its end.
        st.integers(t0 - 4 * 3600, t1 + 600),
    )
    length = st.one_of(
        st.sampled_from([0, 1, 59, 60, 61, 299, 300, 301, 600, 899, 900, 1800, 3600, 7200]),
        st.integers(0, 5 * 3600),
    )
    sessions = draw(
        st.lists(
            st.tuples(
                start,
                length,
                st.sampled_from(["a", "b", "c", "d", "e"]),  # few listeners: many return
                st.sampled_from(["/live.mp3", "/talk.mp3"]),
            ),
            max_size=14,
        )
    )
    # Returning listeners: the same visitor again soon after (or while) a session ended.
    returns = (
        draw(
            st.lists(
                st.tuples(st.sampled_from(sessions), st.integers(-120, 400), length), max_size=4
            )
        )
        if sessions
        else []
    )
    sessions += [(s + n + gap, again, v, m) for (s, n, v, m), gap, again in returns]
    # Look-alikes: the same start and length under another visitor id.
    copies = draw(st.lists(st.sampled_from(sessions), max_size=3)) if sessions else []
    sessions += [(s, n, v + "'", m) for s, n, v, m in copies]
    min_session = draw(st.sampled_from([60, 60, 1, 30, 120]))
    by = draw(st.sampled_from([None, "day", "hour", "weekday", "daypart", "mount"]))
    return sessions, zone_name, first, last, min_session, by


@settings(max_examples=100, deadline=None)
@given(histories())
def test_engine_matches_brute_force(
    history: tuple[list[Session], str, date, date, int, str | None],
) -> None:
    sessions, zone_name, first, last, min_session, by = history
    zone = ZoneInfo(zone_name)
    args = (sessions, first, last, zone, min_session, by, DAYPARTS)
    assert_same(engine(*args), brute_force(*args))


def test_exactly_300_seconds_in_a_quarter_hour_count() -> None:
    t0 = midnight(date(2024, 5, 1), ZoneInfo("UTC"))
    sessions = [
        (t0 + 600, 300, "a", "/m"),  # 300 s in 00:00-00:15
        (t0 + 900 + 601, 299, "b", "/m"),  # 299 s in 00:15-00:30: not counted
        (t0 + 1800 + 100, 150, "c", "/m"),  # 150 + 150 s of one listener in 00:30-00:45
        (t0 + 1800 + 500, 150, "c", "/m"),
        (t0 + 2700 + 10, 400, "d", "/m"),  # look-alikes: two listeners
        (t0 + 2700 + 10, 400, "e", "/m"),
    ]
    result = report(
        collect([sessions]),
        quarter_grid(date(2024, 5, 1), date(2024, 5, 1), ZoneInfo("UTC")),
        min_session=60,
    )
    assert result.listeners[:4].tolist() == [1, 0, 1, 2]
    assert result.totals.aqh == 4 / 96
    assert result.totals.cume == 5
    assert (result.totals.peak, result.totals.peak_at) == (2, t0 + 2710)


@pytest.mark.parametrize(
    ("day", "hours", "quarters"),
    [(date(2024, 3, 31), 23, 92), (date(2024, 10, 27), 25, 100), (date(2024, 6, 1), 24, 96)],
)
def test_days_with_clock_changes(day: date, hours: int, quarters: int) -> None:
    zone = ZoneInfo("Europe/Berlin")
    grid = quarter_grid(day, day, zone)
    assert len(grid) == quarters
    assert grid.end - grid.start == hours * 3600
    # A listener through the whole day: every quarter hour has them, AAS is one.
    result = report(
        collect([[(grid.start - 60, hours * 3600 + 120, "a", None)]]),
        grid,
        min_session=60,
        by="hour",
    )
    assert (result.totals.aqh, result.totals.aas, result.totals.tlh) == (1.0, 1.0, hours)
    counts = {key: m.seconds for key, m in result.rows}
    if hours == 23:
        assert "02:00" not in counts
    if hours == 25:
        assert counts["02:00"] == 7200  # the hour that happens twice


def test_empty_period_gives_zeros() -> None:
    grid = quarter_grid(date(2024, 1, 1), date(2024, 1, 7), ZoneInfo("UTC"))
    result = report(collect([]), grid, min_session=60, by="weekday")
    for metrics in [result.totals, *(m for _, m in result.rows)]:
        assert asdict(metrics) == {
            **dict.fromkeys(
                ("sessions", "active_sessions", "seconds", "cume", "peak", "short_sessions"), 0
            ),
            **dict.fromkeys(("tlh", "aas", "atsl", "tsl", "aqh"), 0.0),
            "peak_at": None,
            "durations": dict.fromkeys(
                ("1-5min", "5-10min", "10-30min", "30-60min", "1-2h", "2h+"), 0
            ),
        }
    assert len(result.rows) == 7


def test_duration_buckets_from_their_lower_bound() -> None:
    t0 = midnight(date(2024, 5, 1), ZoneInfo("UTC"))
    lengths = [59, 60, 299, 300, 599, 600, 1799, 1800, 3599, 3600, 7199, 7200, 36000]
    sessions = [(t0 + i, n, str(i), None) for i, n in enumerate(lengths)]
    grid = quarter_grid(date(2024, 5, 1), date(2024, 5, 1), ZoneInfo("UTC"))
    result = report(collect([sessions]), grid, min_session=60)
    assert result.totals.durations == {
        "1-5min": 2, "5-10min": 2, "10-30min": 2, "30-60min": 2, "1-2h": 2, "2h+": 2,
    }  # fmt: skip
    assert result.totals.short_sessions == 1
    low = report(collect([sessions]), grid, min_session=30)
    assert low.totals.durations["0-1min"] == 1


def test_dayparts_parse_and_refuse() -> None:
    part = parse_daypart("Late", "Sat-Mon,Wed 22:30-24:00")
    assert (part.days, part.start, part.end) == (frozenset({5, 6, 0, 2}), 1350, 1440)
    for spec, message in [
        ("Mon-Fri 6:00-10:00", "is not of the form"),
        ("Mon-Fry 06:00-10:00", "'Mon-Fry' is not a day"),
        ("Mon 06:10-07:00", "not on a quarter hour"),
        ("Mon 19:00-06:00", "ends before it starts"),
        ("Mon 06:00-24:15", "not a time of day"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_daypart("x", spec)
