"""The audience metrics of a period, computed exactly from finished sessions.

Pure: sessions in (start, seconds, visitor id, group value) rows, a quarter-hour grid and the
settings in; numbers out. Everything works on sorted arrays (numpy), so a month of a million
sessions takes about a second, and the quarter-hour audience (AQH) is computed from the sessions'
ends, never by walking seconds.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count

import numpy as np
from numpy.typing import NDArray

from audimeter.reports.dayparts import Daypart
from audimeter.reports.periods import SLICES, Grid, Ints, Slice, slices, whole
from audimeter.reports.titles import PlayRow, TitleMetrics, title_rows

AQH_SECONDS = 300
"""Listening inside a quarter hour that makes a listener count in it (5 minutes)."""

BUCKETS = (
    ("1-5min", 60),
    ("5-10min", 300),
    ("10-30min", 600),
    ("30-60min", 1800),
    ("1-2h", 3600),
    ("2h+", 7200),
)
"""Duration buckets, each from its lower bound (seconds) inclusive."""

SHORT_BUCKET = ("0-1min", 0)
"""Only with min_session below 60 s can a valid session be shorter than the first bucket."""

GROUPS = ("mount", "source", "site", "player", "country")
"""Breakdowns by a value of the session: each row is the period, restricted to that value."""

Row = tuple[int, int, str, Hashable]
"""started_at, seconds, visitor id, group value (None without a breakdown by value)."""


def buckets(min_session: int) -> tuple[tuple[str, int], ...]:
    return (SHORT_BUCKET, *BUCKETS) if min_session < BUCKETS[0][1] else BUCKETS


@dataclass(frozen=True)
class Metrics:
    sessions: int
    active_sessions: int
    seconds: int
    """Listening seconds inside the slice (tlh * 3600, exact)."""
    tlh: float
    aas: float
    atsl: float
    cume: int
    tsl: float
    aqh: float
    peak: int
    peak_at: int | None
    """UTC instant at which `peak` was first reached; None when no session was open."""
    short_sessions: int
    durations: dict[str, int]


@dataclass(frozen=True)
class Sessions:
    """Column arrays of sessions; `visitor` and `group` are codes into `groups` and ids."""

    start: Ints
    seconds: Ints
    visitor: Ints
    group: Ints
    groups: list[Hashable]
    visitors: int
    """How many distinct visitor ids there are (codes are 0 to visitors - 1)."""

    @property
    def end(self) -> Ints:
        return self.start + self.seconds

    def subset(self, mask: NDArray[np.bool_]) -> Sessions:
        return Sessions(
            self.start[mask],
            self.seconds[mask],
            self.visitor[mask],
            self.group[mask],
            self.groups,
            self.visitors,
        )


def _columns(
    chunks: Iterable[Sequence[Row]],
    visitors: defaultdict[str, int],
    groups: defaultdict[Hashable, int],
) -> Iterator[list[Ints]]:
    for block in chunks:
        if not block:
            continue
        starts, seconds, ids, values = zip(*block, strict=True)
        yield [
            np.array(starts, dtype=np.int64),
            np.array(seconds, dtype=np.int64),
            np.fromiter(map(visitors.__getitem__, ids), dtype=np.int64, count=len(ids)),
            np.fromiter(map(groups.__getitem__, values), dtype=np.int64, count=len(ids)),
        ]


def collect(chunks: Iterable[Sequence[Row]]) -> Sessions:
    """Arrays from rows, given in chunks, so that a million rows never sit in Python objects."""
    # A code for each new id, handed out by the dict itself (C speed, no Python call per row).
    visitors: defaultdict[str, int] = defaultdict(count().__next__)
    groups: defaultdict[Hashable, int] = defaultdict(count().__next__)
    parts: list[list[Ints]] = []
    # The rows hold no reference cycles; without this, the collector would walk each chunk's
    # tuples again and again while they are made (a third of the time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        parts = list(_columns(chunks, visitors, groups))
    finally:
        if collecting:
            gc.enable()
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Sessions(empty, empty, empty, empty, [], 0)
    col = [np.concatenate([p[i] for p in parts]) for i in range(4)]
    return Sessions(col[0], col[1], col[2], col[3], list(groups), len(visitors))


def quarter_listeners(
    start: Ints, end: Ints, visitor: Ints, bounds: Ints, chunk: int = 1 << 18
) -> Ints:
    """For each quarter hour, the listeners with at least 300 s of listening inside it.

    A listener's sessions are first merged (a second counts once however many sessions cover
    it). Quarter hours that a merged interval covers whole count through a difference array; the
    at most two partial quarter hours at its ends are summed per listener, since one listener's
    consecutive intervals can add up in one quarter hour.
    """
    count = len(bounds) - 1
    origin = int(bounds[0])
    s = np.maximum(start, origin) - origin
    e = np.minimum(end, int(bounds[-1])) - origin
    keep = e > s
    # One number line with every listener on its own stretch: sorting sorts by listener, then time.
    span = int(bounds[-1]) - origin + 1
    key_start = visitor[keep] * span + s[keep]
    key_end = visitor[keep] * span + e[keep]
    del s, e, keep
    order = np.argsort(key_start, kind="stable")
    key_start, key_end = key_start[order], key_end[order]
    del order
    listeners = np.zeros(count, dtype=np.int64)
    # In chunks of whole listeners, so that memory stays small whatever the number of sessions.
    lo = 0
    while lo < len(key_start):
        hi = min(lo + chunk, len(key_start))
        if hi < len(key_start):
            next_listener = key_start[hi] // span
            hi = max(int(np.searchsorted(key_start, next_listener * span)), lo + 1)
        listeners += _listeners_of(key_start[lo:hi], key_end[lo:hi], span, origin, bounds)
        lo = hi
    return listeners


def _listeners_of(key_start: Ints, key_end: Ints, span: int, origin: int, bounds: Ints) -> Ints:
    count = len(bounds) - 1
    reach = np.maximum.accumulate(key_end)
    first = np.flatnonzero(np.concatenate([[True], key_start[1:] > reach[:-1]]))
    merged_start = key_start[first]
    merged_end = np.maximum.reduceat(key_end, first)
    listener = merged_start // span
    a = merged_start - listener * span + origin
    b = merged_end - listener * span + origin
    qa = np.searchsorted(bounds, a, side="right") - 1
    qb = np.searchsorted(bounds, b - 1, side="right") - 1
    inner = qb - qa >= 2
    steps = np.bincount(qa[inner] + 1, minlength=count + 1) - np.bincount(
        qb[inner], minlength=count + 1
    )
    full = np.cumsum(steps)[:count]
    head = np.minimum(b, bounds[qa + 1]) - a
    tail = np.where(qb > qa, b - bounds[qb], 0)
    piece_key = np.column_stack([listener * count + qa, listener * count + qb]).ravel()
    piece_seconds = np.column_stack([head, tail]).ravel()
    cut = np.flatnonzero(np.concatenate([[True], piece_key[1:] != piece_key[:-1]]))
    totals = np.add.reduceat(piece_seconds, cut)
    heard = piece_key[cut][totals >= AQH_SECONDS] % count
    return full + np.bincount(heard, minlength=count)


def _covered(slice_: Slice, instants: Ints) -> Ints:
    """Seconds of the slice before each instant."""
    if len(slice_.starts) == 1:
        covered: Ints = np.clip(instants - slice_.starts[0], 0, slice_.ends[0] - slice_.starts[0])
        return covered
    lengths = slice_.ends - slice_.starts
    before = np.concatenate([[0], np.cumsum(lengths)])
    k = np.searchsorted(slice_.starts, instants, side="right") - 1
    inside = np.clip(instants - slice_.starts[np.maximum(k, 0)], 0, lengths[np.maximum(k, 0)])
    return np.where(k >= 0, before[np.maximum(k, 0)] + inside, 0)


def _count_in(slice_: Slice, sorted_instants: Ints) -> int:
    """How many of the sorted instants lie in the slice."""
    upto = np.searchsorted(sorted_instants, slice_.ends, side="left")
    since = np.searchsorted(sorted_instants, slice_.starts, side="left")
    return int((upto - since).sum())


class Population:
    """The sessions one row counts, prepared once for any number of slices."""

    def __init__(self, sessions: Sessions, grid: Grid, min_session: int) -> None:
        valid = sessions.seconds >= min_session
        order = np.argsort(sessions.start[valid], kind="stable")
        self.start = sessions.start[valid][order]
        self.seconds = sessions.seconds[valid][order]
        self.end = self.start + self.seconds
        self.visitor = sessions.visitor[valid][order]
        self.longest = int(self.seconds.max()) if self.seconds.size else 0
        self.short_starts = np.sort(sessions.start[~valid])
        self.listeners = quarter_listeners(self.start, self.end, self.visitor, grid.bounds)
        self.buckets = buckets(min_session)
        self.visitors = sessions.visitors

    def metrics(self, slice_: Slice) -> Metrics:
        lo = np.searchsorted(self.start, slice_.starts[0] - self.longest, side="left")
        hi = np.searchsorted(self.start, slice_.ends[-1], side="left")
        start, end = self.start[lo:hi], self.end[lo:hi]
        inside = _covered(slice_, end) - _covered(slice_, start)
        active = inside > 0
        seconds = int(inside.sum())
        k = np.searchsorted(slice_.starts, start, side="right") - 1
        started = (k >= 0) & (start < slice_.ends[np.maximum(k, 0)])
        lengths = self.seconds[lo:hi][started]
        edges = np.array([low for _, low in self.buckets][1:], dtype=np.int64)
        per_bucket = np.bincount(
            np.searchsorted(edges, lengths, side="right"), minlength=len(edges) + 1
        )
        active_sessions = int(active.sum())
        heard = np.zeros(self.visitors, dtype=np.bool_)
        heard[self.visitor[lo:hi][active]] = True
        cume = int(np.count_nonzero(heard))
        peak, peak_at = self._peak(slice_, start[active], end[active])
        hours = slice_.seconds / 3600
        quarters = self.listeners[slice_.quarters]
        return Metrics(
            sessions=int(started.sum()),
            active_sessions=active_sessions,
            seconds=seconds,
            tlh=seconds / 3600,
            aas=seconds / 3600 / hours if hours else 0.0,
            atsl=seconds / active_sessions if active_sessions else 0.0,
            cume=cume,
            tsl=seconds / cume if cume else 0.0,
            aqh=float(quarters.mean()) if quarters.size else 0.0,
            peak=peak,
            peak_at=peak_at,
            short_sessions=_count_in(slice_, self.short_starts),
            durations={name: int(n) for (name, _), n in zip(self.buckets, per_bucket, strict=True)},
        )

    @staticmethod
    def _peak(slice_: Slice, start: Ints, end: Ints) -> tuple[int, int | None]:
        """Open sessions change only where one starts or ends, so the most is reached at a start
        inside the slice or where a run of the slice begins."""
        if not start.size:
            return 0, None
        k = np.searchsorted(slice_.starts, start, side="right") - 1
        in_slice = (k >= 0) & (start < slice_.ends[np.maximum(k, 0)])
        # Both parts are sorted already (sessions are in start order): a stable sort merges them.
        moments = np.sort(np.concatenate([slice_.starts, start[in_slice]]), kind="stable")
        ends = np.sort(end)
        open_ = np.searchsorted(start, moments, side="right") - np.searchsorted(
            ends, moments, side="right"
        )
        best = int(np.argmax(open_))
        return int(open_[best]), int(moments[best])


@dataclass(frozen=True)
class Report:
    grid: Grid
    min_session: int
    by: str | None
    totals: Metrics
    rows: list[tuple[Hashable, Metrics]]
    listeners: Ints
    """Listeners counted in each quarter hour of the period (the terms of the total AQH)."""
    titles: list[tuple[str, TitleMetrics]]
    """With `by="title"`, the rows (the numbers of a title are not `Metrics`)."""


def _sort_key(value: Hashable) -> tuple[int, str]:
    return (0, f"{value:020d}") if isinstance(value, int) else (1, str(value))


def report(
    sessions: Sessions,
    grid: Grid,
    *,
    min_session: int,
    by: str | None = None,
    dayparts: Sequence[Daypart] = (),
    plays: Iterable[PlayRow] = (),
) -> Report:
    """Totals over the period and, with `by`, one row per slice of time or per group value;
    with `by="title"`, one per title of `plays` (whose mount keys are the sessions' groups)."""
    everyone = Population(sessions, grid, min_session)
    period = whole(grid)
    rows: list[tuple[Hashable, Metrics]] = []
    titles: list[tuple[str, TitleMetrics]] = []
    if by == "title":
        titles = title_rows(sessions, plays, min_session)
    elif by in SLICES:
        rows = [(s.key, everyone.metrics(s)) for s in slices(grid, by, dayparts)]
    elif by in GROUPS:
        for code in sorted(
            range(len(sessions.groups)), key=lambda c: _sort_key(sessions.groups[c])
        ):
            group = Population(sessions.subset(sessions.group == code), grid, min_session)
            rows.append((sessions.groups[code], group.metrics(period)))
    elif by is not None:
        raise ValueError(f"unknown breakdown: {by}")
    return Report(grid, min_session, by, everyone.metrics(period), rows, everyone.listeners, titles)
