"""Histories of finished sessions in a state file, as the report reads them: a realistic station."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from audimeter.reports.periods import local_midnight

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    source TEXT, mount TEXT, site_id INTEGER, visitor_id TEXT, started_at INTEGER,
    ended_at INTEGER, seconds INTEGER, reason TEXT, user_agent TEXT, referrer TEXT,
    player TEXT NOT NULL DEFAULT '', country TEXT NOT NULL DEFAULT ''
)
"""

TITLES_SCHEMA = """
CREATE TABLE IF NOT EXISTS titles (
    id INTEGER PRIMARY KEY, source TEXT, mount TEXT, title TEXT, started_at INTEGER,
    ended_at INTEGER
)
"""

# Share of a weekday's session starts in each local hour: a quiet night, a morning-drive peak,
# a long working day and a second peak in the afternoon drive.
WEEKDAY_CURVE = [
    0.9, 0.6, 0.4, 0.4, 0.6, 1.6, 4.0, 6.5, 7.0, 6.0, 5.4, 5.2,
    5.4, 5.2, 5.3, 5.8, 6.4, 6.6, 5.6, 4.4, 3.6, 3.0, 2.4, 1.6,
]  # fmt: skip
WEEKEND_CURVE = [
    1.4, 1.0, 0.7, 0.5, 0.5, 0.7, 1.2, 2.2, 3.6, 4.8, 5.6, 6.0,
    6.0, 5.8, 5.6, 5.4, 5.4, 5.4, 5.0, 4.6, 4.0, 3.4, 2.6, 2.0,
]  # fmt: skip
MOUNTS = ("/live.mp3", "/live.aac", "/talk.mp3")
MOUNT_SHARES = (0.62, 0.28, 0.10)
USER_AGENTS = ("VLC/3.0.20 LibVLC/3.0.20", "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15", "Winamp")


HistoryRow = tuple[str, str, int, str, int, int, int, str, str, str]
"""A row of the history table, in its column order."""


def station_history(
    first: date, days: int, sessions: int, zone: ZoneInfo, seed: int = 1
) -> list[HistoryRow]:
    """A station's sessions: starts following the daily curve in the zone, lengths from a second
    to hours (about 15% under a minute), returning listeners (a few listen daily, most rarely)
    and look-alikes (a second listener with the same address and player, its own visitor id)."""
    rng = np.random.default_rng(seed)
    day_starts = np.array([local_midnight(first + timedelta(d), zone) for d in range(days + 1)])
    weekend = np.array([(first + timedelta(d)).weekday() >= 5 for d in range(days)])
    weights = (
        np.where(weekend[:, None], WEEKEND_CURVE, WEEKDAY_CURVE)
        * np.where(weekend, 0.8, 1.0)[:, None]
    )
    cells = rng.choice(days * 24, size=sessions, p=(weights / weights.sum()).ravel())
    day, hour = cells // 24, cells % 24
    # Hours counted from local midnight; clock changes shift the curve by an hour on one day.
    length_of_day = day_starts[1:] - day_starts[:-1]
    offset = np.minimum(hour * 3600 + rng.integers(0, 3600, sessions), length_of_day[day] - 1)
    starts = day_starts[day] + offset
    seconds = np.where(
        rng.random(sessions) < 0.15,
        rng.integers(1, 60, sessions),
        np.minimum(np.exp(rng.normal(np.log(1500), 1.1, sessions)), 8 * 3600).astype(np.int64),
    )
    seconds = np.maximum(seconds, 60, where=seconds >= 60, out=seconds.copy())
    listeners = max(1, sessions // 6)
    visitor = (rng.pareto(1.2, sessions) * listeners / 20).astype(np.int64) % listeners
    look_alike = rng.random(sessions) < 0.02
    visitor = np.where(look_alike, listeners + np.arange(sessions), visitor)
    mount = rng.choice(len(MOUNTS), size=sessions, p=MOUNT_SHARES)
    return [
        (
            "main",
            MOUNTS[m],
            1,
            f"{v:016x}",
            int(s),
            int(s + n),
            int(n),
            "gone",
            USER_AGENTS[v % len(USER_AGENTS)],
            "",
        )
        for s, n, v, m in zip(
            starts.tolist(), seconds.tolist(), visitor.tolist(), mount.tolist(), strict=True
        )
    ]


def station_plays(
    first: date, days: int, zone: ZoneInfo, seed: int = 1
) -> list[tuple[str, str, str, int, int | None]]:
    """Each mount's plays, back to back, 2 to 6 minutes long, from a catalogue of 2,000 titles
    (a few hits played far more often than the rest): about 35,000 plays a month."""
    rng = np.random.default_rng(seed)
    start, end = local_midnight(first, zone), local_midnight(first + timedelta(days), zone)
    plays = []
    for mount in MOUNTS:
        count = (end - start) // 240 + 1
        lengths = rng.integers(120, 360, count)
        starts = start + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        titles = (rng.pareto(1.0, count) * 50).astype(np.int64) % 2000
        for s, n, t in zip(starts.tolist(), lengths.tolist(), titles.tolist(), strict=True):
            if s < end:
                plays.append(("main", mount, f"Artist {t % 300} - Song {t}", s, s + n))
    return plays


COLUMNS = (
    "source, mount, site_id, visitor_id, started_at, ended_at, seconds, reason, user_agent,"
    " referrer, player, country"
)


def write_history(path: Path, rows: Sequence[Sequence[object]]) -> None:
    """Rows of `COLUMNS`, in that order; `player` and `country` may be left off (empty)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(HISTORY_SCHEMA)
    with db:
        for width in {len(row) for row in rows}:
            names = ", ".join(COLUMNS.split(", ")[:width])
            db.executemany(
                f"INSERT INTO history({names}) VALUES ({', '.join('?' * width)})",  # noqa: S608
                [row for row in rows if len(row) == width],
            )
    db.close()


def write_plays(path: Path, rows: list[tuple[str, str, str, int, int | None]]) -> None:
    """Plays (source, mount, title, started_at, ended_at) as `audimeter run` records them."""
    db = sqlite3.connect(path)
    db.execute(TITLES_SCHEMA)
    with db:
        db.executemany(
            "INSERT INTO titles(source, mount, title, started_at, ended_at) VALUES (?,?,?,?,?)",
            rows,
        )
    db.close()


def write_config(directory: Path, state: Path) -> Path:
    config = directory / "audimeter.toml"
    config.write_text(
        f'[state]\npath = "{state}"\n\n[[sources]]\nname = "main"\nkind = "icecast"\n'
        'url = "http://127.0.0.1:8000"\npassword = "hackme"\n'
    )
    config.chmod(0o600)
    return config
