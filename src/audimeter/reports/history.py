"""Reading finished sessions from the state file's `history` table, beside a running daemon."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audimeter.reports.metrics import Row

MOUNT_KEY = "source || char(31) || mount"
"""A mount of a source as one value: what plays and sessions of `--by title` are matched by."""
UNKNOWN_COUNTRY = "unknown"
"""The key of the sessions whose country is not known (no GeoIP database, or not in it)."""
GROUP_COLUMNS = {
    "mount": "mount",
    "source": "source",
    "site": "site_id",
    "player": "player",
    "country": f"coalesce(nullif(country, ''), '{UNKNOWN_COUNTRY}')",
    "title": MOUNT_KEY,
}
"""The SQL that gives each session's value for a breakdown by value."""


class HistoryError(Exception):
    """The history cannot be read; the message says why and what to do."""


def read_sessions(
    path: Path,
    start: int,
    end: int,
    *,
    source: str | None = None,
    mount: str | None = None,
    group: str | None = None,
    chunk: int = 65_536,
) -> Iterator[list[Row]]:
    """(started_at, seconds, visitor_id, group value) of the sessions overlapping [start, end)
    or starting in it (short ones too), in lists of `chunk` rows (fewer Python steps per row).

    Read-only: `audimeter run` may write meanwhile (WAL), and a writer holding the file briefly
    is waited for (busy timeout).
    """
    value = GROUP_COLUMNS[group] if group else "NULL"
    where, args = _filters(end, start, source, mount)
    query = (
        f"SELECT started_at, seconds, visitor_id, {value} FROM history "  # noqa: S608 (fixed names)
        f"WHERE {' AND '.join(where)}"
    )
    yield from _read(path, query, args, chunk)


def read_plays(
    path: Path, start: int, end: int, *, source: str | None = None, mount: str | None = None
) -> list[tuple[str, str, int, int]]:
    """(mount key, title, started_at, ended_at) of the plays that started in [start, end) and
    have ended."""
    where, args = _filters(end, start, source, mount)
    where[1] = "started_at >= ? AND ended_at IS NOT NULL"
    query = (
        f"SELECT {MOUNT_KEY}, title, started_at, ended_at FROM titles "  # noqa: S608 (fixed names)
        f"WHERE {' AND '.join(where)}"
    )
    return [row for block in _read(path, query, args, 65_536) for row in block]


def _filters(
    end: int, start: int, source: str | None, mount: str | None
) -> tuple[list[str], list[str | int]]:
    where = ["started_at < ?", "ended_at >= ?"]
    args: list[str | int] = [end, start]
    if source is not None:
        where.append("source = ?")
        args.append(source)
    if mount is not None:
        where.append("mount = ?")
        args.append(mount)
    return where, args


def _read(path: Path, query: str, args: list[str | int], chunk: int) -> Iterator[list[Any]]:
    if not path.exists():
        raise HistoryError(f"there is no state file {path} (check [state] path)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open the state file {path}: {exc}") from None
    try:
        # One statement reads one snapshot, however long it takes.
        cursor = db.execute(query, args)
        while block := cursor.fetchmany(chunk):
            yield block
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            if "titles" in str(exc):
                raise HistoryError(
                    f"{path} has no titles on air recorded yet: `audimeter run` records them "
                    "from this version on"
                ) from None
            raise HistoryError(
                f"{path} has no history of sessions yet: it is written by `audimeter run` and "
                "`audimeter import` from this version on"
            ) from None
        raise HistoryError(f"cannot read the history in {path}: {exc}") from None
    finally:
        db.close()
