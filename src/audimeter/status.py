"""`audimeter status` and `audimeter top`: what the state file says about a run, read-only.

`audimeter run` records its start, its main loop's last round and each source's last good poll
(`Store.record_status`, every few seconds); the rest is what the state file holds anyway: open
sessions, the history of finished ones, the journal and each output's cursor. A read is one
SQLite read transaction, so it sees one consistent moment while `run` goes on writing (WAL).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from audimeter.config import Config
from audimeter.health import OutputHealth, SourceHealth, Verdict, assess
from audimeter.store import LOOP_BEAT, MATOMO, RUN_STARTED, SourceStatus

SPARK_MINUTES = 60
"""`audimeter top`'s sparkline: listeners at each of the last 60 minutes (the last is now)."""


class StatusError(Exception):
    """The state file cannot be read; the message says why and what to do."""


@dataclass
class MountRow:
    source: str
    mount: str
    listeners: int = 0
    sessions_today: int = 0
    seconds_today: int = 0
    joins: int = 0
    """Sessions started in the last minute (`activity` only)."""
    leaves: int = 0
    """Sessions ended in the last minute (`activity` only)."""
    spark: list[int] = field(default_factory=list)
    """Listeners at each of the last `SPARK_MINUTES` minutes (`activity` only)."""


@dataclass(frozen=True)
class OutputRow:
    name: str
    pending: int
    oldest_pending: float | None
    dead_letters: int


@dataclass(frozen=True)
class Snapshot:
    now: float
    started_at: float | None
    loop_beat: float | None
    sources: list[SourceStatus]
    mounts: list[MountRow]
    outputs: list[OutputRow]
    verdict: Verdict


def midnight(now: float, zone: ZoneInfo) -> int:
    """The unix time of the last midnight in `zone` (the start of today there)."""
    today = datetime.fromtimestamp(now, zone).date()
    return int(datetime.combine(today, time(0), tzinfo=zone).timestamp())


class StateReader:
    """A read-only connection to a state file, for one snapshot or one a second."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise StatusError(
                f"there is no state file {path} (check [state] path; `audimeter run` creates it)"
            )
        try:
            self._db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StatusError(f"cannot open the state file {path}: {exc}") from None

        self._finished = _Finished()

    def close(self) -> None:
        self._db.close()

    def snapshot(self, config: Config, now: float, *, activity: bool = False) -> Snapshot:
        """What the state file says at `now`; with `activity`, also each mount's joins and
        leaves of the last minute and its listeners of the last hour (for `top`)."""
        try:
            self._db.execute("BEGIN")
            try:
                return self._read(config, now, activity)
            finally:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StatusError(
                f"cannot read the state file {self.path} ({exc}); is it an audimeter state "
                "file? (check [state] path)"
            ) from None

    def _rows(self, query: str, *args: object) -> list[Any]:
        return self._db.execute(query, args).fetchall()

    def _read(self, config: Config, now: float, activity: bool) -> Snapshot:
        meta = dict(self._rows("SELECT key, value FROM meta WHERE key IN (?, ?)", *_META))
        started = float(meta[RUN_STARTED]) if RUN_STARTED in meta else None
        beat = float(meta[LOOP_BEAT]) if LOOP_BEAT in meta else None
        sources = self._sources(config)
        mounts = self._mounts(int(now), midnight(now, ZoneInfo(config.reports.timezone)))
        if activity:
            self._activity(mounts, int(now))
        outputs = self._outputs()
        verdict = assess(
            now,
            loop_beat=beat,
            # A stopped run polls nothing: its sources' silence is no news of theirs.
            sources=[
                SourceHealth(s.name, s.grace, started or now, s.last_ok, s.problem) for s in sources
            ]
            if beat is not None
            else [],
            outputs=[OutputHealth(o.name, o.oldest_pending) for o in outputs],
            delivery_lag=config.health.delivery_lag,
        )
        return Snapshot(now, started, beat, sources, mounts, outputs, verdict)

    def _sources(self, config: Config) -> list[SourceStatus]:
        """The configured sources, with what the run recorded of each."""
        recorded: dict[str, tuple[Any, ...]] = {}
        if self._has_table("source_status"):
            rows = self._rows("SELECT source, software, last_ok, problem FROM source_status")
            recorded = {row[0]: row[1:] for row in rows}
        out = []
        for s in config.sources:
            software, last_ok, problem = recorded.get(s.name, ("", None, None))
            out.append(SourceStatus(s.name, s.kind, software, s.outage_grace, last_ok, problem))
        return out

    def _mounts(self, now: int, today: int) -> list[MountRow]:
        mounts: dict[tuple[str, str], MountRow] = {}

        def row(source: str, mount: str) -> MountRow:
            return mounts.setdefault((source, mount), MountRow(source, mount))

        for source, mount in self._rows("SELECT source, mount FROM mounts"):
            row(source, mount)
        for source, mount, listening, count, seconds in self._rows(
            "SELECT source, mount, sum(gone_at IS NULL), count(*),"
            " sum(max(0, coalesce(gone_at, ?1) - max(started_at, ?2)))"
            " FROM sessions GROUP BY 1, 2",
            now,
            today,
        ):
            r = row(source, mount)
            r.listeners, r.sessions_today, r.seconds_today = listening, count, seconds
        self._finished.update(self._rows, now, today)
        for (source, mount), (count, seconds) in self._finished.today.items():
            r = row(source, mount)
            r.sessions_today += count
            r.seconds_today += seconds
        return sorted(mounts.values(), key=lambda r: (r.source, r.mount))

    def _activity(self, mounts: Sequence[MountRow], now: int) -> None:
        """Joins and leaves of the last minute, and listeners at each minute of the last hour:
        at minute k (time t0 + 60 k) a session counts that started at or before and ends after.
        A session begins to count at minute ceil((start - t0) / 60), and stops at its end's."""
        t0 = now - 60 * (SPARK_MINUTES - 1)
        by_key = {(r.source, r.mount): r for r in mounts}
        steps = {key: [0] * (SPARK_MINUTES + 1) for key in by_key}
        for key, started, ended in self._finished.hour:
            if ended > t0 and key in by_key:
                steps[key][(max(started - t0, 0) + 59) // 60] += 1
                steps[key][min((ended - t0 + 59) // 60, SPARK_MINUTES)] -= 1
                by_key[key].joins += started > now - 60
                by_key[key].leaves += ended > now - 60
        for source, mount, begins, stops, count, joins, leaves in self._rows(
            "SELECT source, mount, (max(started_at - ?1, 0) + 59) / 60, (gone_at - ?1 + 59) / 60,"
            " count(*), sum(started_at > ?2), sum(coalesce(gone_at > ?2, 0)) FROM sessions"
            " WHERE gone_at IS NULL OR gone_at > ?1 GROUP BY 1, 2, 3, 4",
            t0,
            now - 60,
        ):
            if (source, mount) in by_key:
                steps[source, mount][min(begins, SPARK_MINUTES)] += count
                if stops is not None:
                    steps[source, mount][min(stops, SPARK_MINUTES)] -= count
                by_key[source, mount].joins += joins
                by_key[source, mount].leaves += leaves
        for key, r in by_key.items():
            level, r.spark = 0, []
            for k in range(SPARK_MINUTES):
                level += steps[key][k]
                r.spark.append(level)

    def _outputs(self) -> list[OutputRow]:
        out = []
        for name, seq in self._rows("SELECT output, seq FROM cursors ORDER BY 1"):
            pending, first = self._rows(
                "SELECT count(*), (SELECT at FROM journal WHERE seq > ?1 AND at > 0"
                " ORDER BY seq LIMIT 1) FROM journal WHERE seq > ?1",
                seq,
            )[0]
            dead = 0
            if name == MATOMO:  # parked events and dead letters are Matomo's alone
                parked, parked_first = self._rows(
                    "SELECT count(*), min(nullif(at, 0)) FROM parked"
                )[0]
                pending += parked
                first = min((t for t in (first, parked_first) if t is not None), default=None)
                dead = self._rows("SELECT count(*) FROM dead_letter")[0][0]
            out.append(OutputRow(name, pending, first, dead))
        return out

    def _has_table(self, name: str) -> bool:
        return bool(self._rows("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", name))


_META = (RUN_STARTED, LOOP_BEAT)

HOUR = 60 * SPARK_MINUTES
RESYNC = 300.0
"""Seconds between two full reads of the finished sessions (`_Finished`)."""


class _Finished:
    """The finished sessions of the history that status and top show: today's count and
    listening seconds per mount, and the (start, end) of those that ended in the last hour.

    Read in full (summed up by SQLite) at the first snapshot, at midnight and every `RESYNC`
    seconds, in case rows were deleted (`audimeter forget`); in between only the rows added
    since (history rows are appended, and pruned only when long over), so that `top` at a large
    station does not read the day's sessions again every second.
    """

    def __init__(self) -> None:
        self.today: dict[tuple[str, str], list[int]] = {}
        self.hour: list[tuple[tuple[str, str], int, int]] = []
        self._day: int | None = None
        self._upto = 0
        self._read_at = -float("inf")

    def update(self, rows: Callable[..., list[Any]], now: int, today: int) -> None:
        if today != self._day or now - self._read_at >= RESYNC:
            self._day, self._read_at, self.today, self.hour = today, now, {}, []
            self._upto = rows("SELECT coalesce(max(id), 0) FROM history")[0][0]
            for source, mount, count, seconds in rows(
                "SELECT source, mount, count(*),"
                " sum(max(0, min(ended_at, ?1) - max(started_at, ?2)))"
                " FROM history WHERE ended_at > ?2 AND id <= ?3 GROUP BY 1, 2",
                now,
                today,
                self._upto,
            ):
                self.today[source, mount] = [count, seconds]
            self.hour = [
                ((source, mount), started, ended)
                for source, mount, started, ended in rows(
                    "SELECT source, mount, started_at, ended_at FROM history"
                    " WHERE ended_at > ?1 AND id <= ?2",
                    now - HOUR,
                    self._upto,
                )
            ]
            return
        new = rows(
            "SELECT id, source, mount, started_at, ended_at FROM history"
            " WHERE id > ?1 AND ended_at > ?2",
            self._upto,
            min(today, now - HOUR),
        )
        self._upto = max([self._upto, *(row[0] for row in new)])
        self.hour = [row for row in self.hour if row[2] > now - HOUR]
        for _, source, mount, started, ended in new:
            key = (source, mount)
            if ended > today:
                counts = self.today.setdefault(key, [0, 0])
                counts[0] += 1
                counts[1] += max(0, min(ended, now) - max(started, today))
            if ended > now - HOUR:
                self.hour.append((key, started, ended))


def read_snapshot(path: Path, config: Config, now: float) -> Snapshot:
    reader = StateReader(path)
    try:
        return reader.snapshot(config, now)
    finally:
        reader.close()


# -- JSON -----------------------------------------------------------------------------------


def _age(now: float, at: float | None) -> int | None:
    return None if at is None else round(now - at)


def to_json(snapshot: Snapshot, state: Path, zone: str) -> str:
    """The keys documented in docs/status.md; times are unix seconds, ages whole seconds."""
    now = snapshot.now
    document = {
        "healthy": snapshot.verdict.healthy,
        "problems": list(snapshot.verdict.problems),
        "now": now,
        "state": str(state),
        "timezone": zone,
        "run": {
            "running": snapshot.loop_beat is not None,
            "started_at": snapshot.started_at,
            "loop_beat": snapshot.loop_beat,
            "loop_beat_age": _age(now, snapshot.loop_beat),
        },
        "sources": [
            {
                "name": s.name,
                "kind": s.kind,
                "software": s.software,
                "outage_grace": s.grace,
                "last_ok": s.last_ok,
                "last_ok_age": _age(now, s.last_ok),
                "problem": s.problem,
            }
            for s in snapshot.sources
        ],
        "mounts": [
            {
                "source": m.source,
                "mount": m.mount,
                "listeners": m.listeners,
                "sessions_today": m.sessions_today,
                "listening_hours_today": round(m.seconds_today / 3600, 2),
            }
            for m in snapshot.mounts
        ],
        "outputs": [
            {
                "name": o.name,
                "pending": o.pending,
                "oldest_pending": o.oldest_pending,
                "oldest_pending_age": _age(now, o.oldest_pending),
                "dead_letters": o.dead_letters,
            }
            for o in snapshot.outputs
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
