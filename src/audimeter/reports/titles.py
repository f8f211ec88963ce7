"""The numbers of each title on air (`--by title`), from its plays and the sessions of its mount.

Pure, like `audimeter.reports.metrics`: plays and sessions in, numbers out. Per mount, the valid
sessions' starts and ends are sorted once; every number of a play is then a handful of binary
searches into them, for all plays at once (numpy), and a title's numbers are the sums over its
plays. The listening seconds inside a play come from the running total of listening up to an
instant t, which is t times the sessions started by t, less their starts, less the same for the
sessions ended by t: no second is walked.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from audimeter.reports.periods import Ints

if TYPE_CHECKING:  # metrics calls this module
    from audimeter.reports.metrics import Sessions

PlayRow = tuple[str, str, int, int]
"""A play as read from the state file: its mount's key (as the sessions' group), title, start
and end."""


@dataclass(frozen=True)
class TitleMetrics:
    plays: int
    airtime: int
    """Seconds its plays lasted."""
    seconds: int
    """Seconds of valid listening on its mount while it played."""
    tlh: float
    aas: float
    sessions: int
    """Valid sessions of its mount that started while it played."""
    listeners_at_start: int
    """Valid sessions of its mount open at the start of each of its plays, summed."""
    avg_listeners_at_start: float
    tune_outs: int
    """Valid sessions of its mount that ended while it played."""
    tune_out_rate: float
    """tune_outs ÷ listeners_at_start."""


def _heard_before(t: Ints, starts: Ints, ends: Ints, start_sums: Ints, end_sums: Ints) -> Ints:
    """Seconds of listening before each instant t, from sorted starts and ends and their
    running sums (with a leading 0)."""
    began = np.searchsorted(starts, t, side="right")
    over = np.searchsorted(ends, t, side="right")
    heard: Ints = t * began - start_sums[began] - (t * over - end_sums[over])
    return heard


def _sum_by(codes: Ints, values: Ints, size: int) -> Ints:
    totals = np.zeros(size, dtype=np.int64)
    np.add.at(totals, codes, values)
    return totals


def title_rows(
    sessions: Sessions, plays: Iterable[PlayRow], min_session: int
) -> list[tuple[str, TitleMetrics]]:
    """One row per title: the most listened to first (TLH, then airtime, then the title)."""
    rows = list(plays)
    if not rows:
        return []
    titles: dict[str, int] = {}
    title = np.array([titles.setdefault(row[1], len(titles)) for row in rows], dtype=np.int64)
    start = np.array([row[2] for row in rows], dtype=np.int64)
    end = np.maximum(np.array([row[3] for row in rows], dtype=np.int64), start)
    mount_codes: Mapping[Hashable, int] = {
        value: code for code, value in enumerate(sessions.groups)
    }
    mount = np.array([mount_codes.get(row[0], -1) for row in rows], dtype=np.int64)
    seconds = np.zeros(len(rows), dtype=np.int64)
    at_start = np.zeros(len(rows), dtype=np.int64)
    tune_outs = np.zeros(len(rows), dtype=np.int64)
    started = np.zeros(len(rows), dtype=np.int64)
    valid = sessions.seconds >= min_session
    for code in np.unique(mount[mount >= 0]):
        mine = valid & (sessions.group == code)
        s = np.sort(sessions.start[mine])
        e = np.sort(sessions.end[mine])
        sums = np.concatenate([[0], np.cumsum(s)]), np.concatenate([[0], np.cumsum(e)])
        on = mount == code
        a, b = start[on], end[on]
        seconds[on] = _heard_before(b, s, e, *sums) - _heard_before(a, s, e, *sums)
        ended_by_a = np.searchsorted(e, a, side="right")
        at_start[on] = np.searchsorted(s, a, side="right") - ended_by_a
        tune_outs[on] = np.searchsorted(e, b, side="right") - ended_by_a
        started[on] = np.searchsorted(s, b, side="left") - np.searchsorted(s, a, side="left")
    size = len(titles)
    counts = np.bincount(title, minlength=size)
    totals = {
        name: _sum_by(title, values, size)
        for name, values in (
            ("airtime", end - start),
            ("seconds", seconds),
            ("at_start", at_start),
            ("tune_outs", tune_outs),
            ("started", started),
        )
    }
    result = []
    for name, code in titles.items():
        airtime = int(totals["airtime"][code])
        heard_seconds = int(totals["seconds"][code])
        listeners = int(totals["at_start"][code])
        left = int(totals["tune_outs"][code])
        plays_count = int(counts[code])
        result.append(
            (
                name,
                TitleMetrics(
                    plays=plays_count,
                    airtime=airtime,
                    seconds=heard_seconds,
                    tlh=heard_seconds / 3600,
                    aas=heard_seconds / airtime if airtime else 0.0,
                    sessions=int(totals["started"][code]),
                    listeners_at_start=listeners,
                    avg_listeners_at_start=listeners / plays_count,
                    tune_outs=left,
                    tune_out_rate=left / listeners if listeners else 0.0,
                ),
            )
        )
    result.sort(key=lambda row: (-row[1].seconds, -row[1].airtime, row[0]))
    return result
