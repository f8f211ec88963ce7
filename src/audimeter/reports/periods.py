"""A report's period as clock-aligned quarter hours in its time zone, and its slices.

Every instant is a UTC Unix time in whole seconds. A period runs from local midnight of its first
day to local midnight after its last day, so a day has 23, 24 or 25 hours where the clocks change.
Quarter hours are aligned to the local clock; where the offset is not a multiple of 15 minutes (or
a change falls inside a quarter hour), the change itself is a boundary too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from audimeter.reports.dayparts import WEEKDAYS, Daypart

QUARTER = 900
SLICES = ("day", "hour", "weekday", "daypart")
"""Breakdowns by time: each row is a slice of the period."""

Ints = NDArray[np.int64]


def _offset(zone: ZoneInfo, instant: int) -> int:
    offset = datetime.fromtimestamp(instant, zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def local_midnight(day: date, zone: ZoneInfo) -> int:
    """The instant the local day starts; where midnight is skipped, the instant the clock jumps."""
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())


def _constant_offsets(zone: ZoneInfo, start: int, end: int) -> list[tuple[int, int, int]]:
    """[start, end) cut where the zone's offset changes: (from, to, offset) pieces."""
    first, last = _offset(zone, start), _offset(zone, end - 1)
    if first == last:
        return [(start, end, first)]
    lo, hi = start, end - 1  # the offset changes somewhere in (lo, hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, mid) == first:
            lo = mid
        else:
            hi = mid
    return [(start, hi, first), *_constant_offsets(zone, hi, end)]


@dataclass(frozen=True)
class Grid:
    """The quarter hours of a period: quarter i is [bounds[i], bounds[i + 1])."""

    first: date
    last: date
    zone: ZoneInfo
    bounds: Ints
    day: Ints
    """Index of the local day (0 = first) of each quarter hour."""
    weekday: Ints
    """Local weekday of each quarter hour's start, Monday = 0."""
    minute: Ints
    """Local minute of the day of each quarter hour's start (0 to 1439)."""

    @property
    def start(self) -> int:
        return int(self.bounds[0])

    @property
    def end(self) -> int:
        return int(self.bounds[-1])

    def __len__(self) -> int:
        return len(self.bounds) - 1


def quarter_grid(first: date, last: date, zone: ZoneInfo) -> Grid:
    starts: list[Ints] = []
    days: list[Ints] = []
    locals_: list[Ints] = []
    day = first
    index = 0
    day_start = local_midnight(first, zone)
    while day <= last:
        day_end = local_midnight(day + timedelta(days=1), zone)
        for piece_start, piece_end, offset in _constant_offsets(zone, day_start, day_end):
            aligned = piece_start + (-(piece_start + offset)) % QUARTER
            points = np.arange(aligned, piece_end, QUARTER, dtype=np.int64)
            if aligned != piece_start:
                points = np.concatenate([np.array([piece_start], dtype=np.int64), points])
            starts.append(points)
            days.append(np.full(len(points), index, dtype=np.int64))
            locals_.append(points + offset)
        day, day_start, index = day + timedelta(days=1), day_end, index + 1
    quarter_starts = np.concatenate(starts)
    local = np.concatenate(locals_)
    return Grid(
        first=first,
        last=last,
        zone=zone,
        bounds=np.append(quarter_starts, np.int64(day_start)),
        day=np.concatenate(days),
        weekday=(local // 86400 + 3) % 7,  # 1970-01-01 was a Thursday
        minute=(local % 86400) // 60,
    )


@dataclass(frozen=True)
class Slice:
    """Part of a period: the union of runs [starts[k], ends[k]), in time order."""

    key: str
    quarters: NDArray[np.bool_]
    starts: Ints
    ends: Ints

    @property
    def seconds(self) -> int:
        return int((self.ends - self.starts).sum())


def make_slice(grid: Grid, key: str, quarters: NDArray[np.bool_]) -> Slice:
    index = np.flatnonzero(quarters)
    breaks = np.flatnonzero(np.diff(index) > 1)
    first = index[np.concatenate([[0], breaks + 1])]
    last = index[np.concatenate([breaks, [len(index) - 1]])]
    return Slice(key, quarters, grid.bounds[first], grid.bounds[last + 1])


def whole(grid: Grid) -> Slice:
    return make_slice(grid, "total", np.ones(len(grid), dtype=np.bool_))


def slices(grid: Grid, by: str, dayparts: Sequence[Daypart]) -> list[Slice]:
    """The rows of a breakdown by time, each a non-empty slice of the period."""
    masks: list[tuple[str, NDArray[np.bool_]]]
    if by == "day":
        count = (grid.last - grid.first).days + 1
        masks = [
            ((grid.first + timedelta(days=i)).isoformat(), grid.day == i) for i in range(count)
        ]
    elif by == "hour":
        masks = [(f"{h:02d}:00", grid.minute // 60 == h) for h in range(24)]
    elif by == "weekday":
        masks = [(name, grid.weekday == i) for i, name in enumerate(WEEKDAYS)]
    elif by == "daypart":
        masks = [
            (
                part.name,
                np.isin(grid.weekday, sorted(part.days))
                & (grid.minute >= part.start)
                & (grid.minute < part.end),
            )
            for part in dayparts
        ]
    else:
        raise ValueError(f"not a breakdown by time: {by}")
    return [make_slice(grid, key, mask) for key, mask in masks if mask.any()]


def iso(instant: int, zone: ZoneInfo) -> str:
    """ISO 8601 with the zone's offset at that instant."""
    return datetime.fromtimestamp(instant, UTC).astimezone(zone).isoformat()
