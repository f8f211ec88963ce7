"""The durable state: open sessions, per-mount poll times, and the outbox of Matomo requests.

One SQLite file in WAL mode. Everything one poll cycle changes is written in one transaction, so
after a crash the file holds the state of the last complete cycle and the requests it produced;
replaying from there yields the same sessions again. Outbox rows are deleted only once Matomo
accepted them (at-least-once delivery). Requests for a site that Matomo refuses to the token wait
in `parked`, with their outbox ids, and go back to the outbox, in order, once it takes them again.

The visitor-id salts of rotation periods (`[privacy] salt_rotation`) are kept in `salts`; what
`audimeter forget` deletes is chosen by `audimeter.privacy` and deleted here, from a connection
that holds the file alone (`Store.open_exclusive`).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from audimeter.campaigns import campaign_of
from audimeter.events import (
    EndReason,
    Event,
    Session,
    SessionEnded,
    SessionKeptAlive,
    SessionStarted,
)
from audimeter.nowplaying import Play, PlayChange, PlayStarted
from audimeter.observations import LogPosition
from audimeter.players import player_name
from audimeter.sessionizer import (
    MountRecord,
    SessionClosed,
    SessionForgotten,
    SessionGone,
    SessionOpened,
    SessionRemembered,
    StateChange,
)

SCHEMA_VERSION = 5
UPGRADABLE = {1, 2, 3, 4}
"""Schema versions this one upgrades: version 2 only added the tables `ended` and `instances`,
version 3 the table `parked`, version 5 the tables `source_status` and `titles` and the
history's `player` and `country` (`_upgrade_history`); the schema script creates the tables when
they are missing. Version 4 journals events instead of queueing Matomo requests: the requests
queued, parked and refused under an earlier version are carried over as they are
(`_upgrade_queues`)."""
JOURNAL_SCHEMA = 4
"""The first version that journals events."""

_EVENT_COLUMNS = """kind TEXT NOT NULL,
    at INTEGER NOT NULL DEFAULT 0,
    previous_at INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    instance TEXT NOT NULL DEFAULT '',
    mount TEXT NOT NULL DEFAULT '',
    client_id TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    referrer TEXT NOT NULL DEFAULT '',
    query TEXT NOT NULL DEFAULT '',
    started_at INTEGER NOT NULL DEFAULT 0,
    slot INTEGER NOT NULL DEFAULT 0,
    visitor_id TEXT NOT NULL DEFAULT '',
    payload TEXT"""
"""A session event as the journal, `parked` and `dead_letter` hold it; `payload` is set only for
kind 'request', a ready-made Matomo tracking request queued by an earlier schema."""
_FIELDS = (
    "kind, at, previous_at, reason, source, instance, mount, client_id, ip, user_agent, referrer,"
    " query, started_at, slot, visitor_id, payload"
)

_MARKS = ",".join("?" * 16)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    source TEXT NOT NULL,
    instance TEXT NOT NULL,
    mount TEXT NOT NULL,
    client_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    referrer TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    query TEXT NOT NULL,
    gone_at INTEGER,
    PRIMARY KEY (source, instance, mount, client_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ended (
    source TEXT NOT NULL,
    instance TEXT NOT NULL,
    mount TEXT NOT NULL,
    client_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    referrer TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    query TEXT NOT NULL,
    ended_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    exact INTEGER NOT NULL,
    PRIMARY KEY (source, instance, mount, client_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS instances (
    source TEXT PRIMARY KEY,
    instance TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mounts (
    source TEXT NOT NULL,
    mount TEXT NOT NULL,
    instance TEXT NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (source, mount)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {event}
);
CREATE TABLE IF NOT EXISTS cursors (
    output TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parked (
    seq INTEGER PRIMARY KEY,
    site INTEGER NOT NULL,
    held INTEGER NOT NULL,
    parked_at INTEGER NOT NULL,
    {event}
);
CREATE INDEX IF NOT EXISTS parked_by_site ON parked(site, seq);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    failure TEXT NOT NULL,
    failed_at INTEGER NOT NULL,
    {event}
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    mount TEXT NOT NULL,
    site_id INTEGER,
    visitor_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    seconds INTEGER NOT NULL,
    reason TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    referrer TEXT NOT NULL,
    campaign TEXT NOT NULL,
    player TEXT NOT NULL DEFAULT '',
    country TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_by_end ON history(ended_at);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_positions (
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    inode INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (source, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imports (
    file_key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    lines INTEGER NOT NULL,
    imported_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS source_status (
    source TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    software TEXT NOT NULL,
    grace REAL NOT NULL,
    last_ok REAL,
    problem TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS salts (
    period TEXT PRIMARY KEY,
    salt TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS titles (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    mount TEXT NOT NULL,
    title TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER
);
CREATE INDEX IF NOT EXISTS titles_by_start ON titles(source, mount, started_at);
""".replace("{event}", _EVENT_COLUMNS)


MATOMO = "matomo"
"""The Matomo output's cursor name."""
PRUNE_BATCH = 10_000
"""Events `prune_journal` deletes at most at once: a short transaction however far it is."""

IMPORT_CHUNK = 20_000
"""Requests per transaction of `commit_import`: a fraction of a second of writing, so that
`audimeter run` on the same state file never waits for an import as long as its busy timeout."""


class StoreError(Exception):
    """The state file cannot be opened or written; the message says what to do."""


class StoreBusy(StoreError):
    """Another process (`audimeter run`, `audimeter import`) has the state file open."""


@dataclass(frozen=True, slots=True)
class Forgotten:
    """How many rows `Store.forget` deleted, per kind."""

    sessions: int = 0
    events: int = 0
    """Journaled and parked events (and requests queued by an earlier schema)."""
    dead_letters: int = 0
    inbox: int = 0
    ended_sessions: int = 0
    history: int = 0


RUN_STARTED = "run_started_at"
LOOP_BEAT = "loop_beat"
"""`meta` keys: unix times of the running `audimeter run`'s start and of its main loop's last
round (deleted when it stops)."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A source as `audimeter run` last saw it (the table `source_status`)."""

    name: str
    kind: str
    software: str
    """Server software and version when the server tells it, else ""."""
    grace: float
    last_ok: float | None
    """Unix time of the last good poll of this run, None before the first."""
    problem: str | None
    """The last poll's failure while the source fails (one line), else None."""


KINDS: dict[type[Event], str] = {
    SessionStarted: "start",
    SessionKeptAlive: "keepalive",
    SessionEnded: "end",
}
REQUEST = "request"
"""The kind of a journal row that holds a ready-made Matomo request (`payload`) instead of an
event: what an earlier schema's outbox held, delivered before the events journaled since."""


@dataclass(frozen=True, slots=True)
class Stamped:
    """A session event with what is settled once, when it is journaled: the visitor id every
    output shows (Matomo's `cid`), and the Matomo site, for the history (None without one)."""

    event: Event
    visitor_id: str
    site_id: int | None = None
    player: str = ""
    """For a session's end: the player's name (`audimeter.players`)."""
    country: str = ""
    """For a session's end: the ISO country code of the address, "" when unknown."""

    def ended(self, player: str, country: str) -> Stamped:
        return Stamped(self.event, self.visitor_id, self.site_id, player, country)


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One row of the journal (or of `parked`, `dead_letter`): an event, or a ready-made
    request (`payload`) from an earlier schema."""

    seq: int
    event: Event | None
    visitor_id: str = ""
    payload: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    row: JournalRow
    reason: str
    failed_at: int


def _values(stamped: Stamped) -> tuple[object, ...]:
    """The `_FIELDS` of a stamped event."""
    event, s = stamped.event, stamped.event.session
    at = event.at
    previous = at if isinstance(event, SessionStarted) else event.previous_at
    reason = event.reason.value if isinstance(event, SessionEnded) else ""
    return (
        KINDS[type(event)],
        at,
        previous,
        reason,
        s.source,
        s.instance,
        s.mount,
        s.client_id,
        s.ip,
        s.user_agent,
        s.referrer,
        s.query,
        s.started_at,
        s.slot,
        stamped.visitor_id,
        None,
    )


def _row(
    seq: int,
    values: Sequence[Any],
    sessions: dict[tuple[Any, ...], Session] | None = None,
    limit: int = 0,
) -> JournalRow:
    """A journal row from its seq and `_FIELDS`. `sessions`: the sessions of rows read before,
    by their fields, so that the events of one session share one `Session` (a session's end is
    its last event: it leaves them); at most `limit` of them."""
    kind, at, previous, reason = values[:4]
    if kind == REQUEST:
        return JournalRow(seq, None, payload=values[15])
    key = tuple(values[4:14])
    session = None if sessions is None else sessions.get(key)
    if session is None:
        source, instance, mount, client_id, ip, user_agent, referrer, query, started, slot = key
        session = Session(
            source, instance, mount, client_id, ip, user_agent, referrer, started, slot, query
        )
        if sessions is not None and kind != "end":
            if len(sessions) >= limit:
                sessions.clear()
            sessions[key] = session
    elif kind == "end":
        sessions.pop(key, None)  # type: ignore[union-attr]
    event: Event
    if kind == "start":
        event = SessionStarted(session)
    elif kind == "keepalive":
        event = SessionKeptAlive(session, at, previous)
    else:
        event = SessionEnded(session, at, previous, _REASONS[reason])
    return JournalRow(seq, event, values[14])


_REASONS = {reason.value: reason for reason in EndReason}

RECENT_ROWS = 8192
"""Rows journaled last that `Store.journal_batch` hands out without reading them back: about a
poll cycle's events at 100,000 listeners, about 1 MB (their sessions are the sessionizer's)."""


def _row_values(row: JournalRow) -> tuple[object, ...]:
    """The `_FIELDS` of a journal row."""
    if row.event is None:
        return (REQUEST, 0, 0, "", "", "", "", "", "", "", "", "", 0, 0, "", row.payload)
    return _values(Stamped(row.event, row.visitor_id))


def _history_values(stamped: Stamped) -> tuple[object, ...] | None:
    """The history row of a session's end, None for other events."""
    event = stamped.event
    if not isinstance(event, SessionEnded):
        return None
    s = event.session
    return (
        s.source,
        s.mount,
        stamped.site_id,
        stamped.visitor_id,
        s.started_at,
        event.at,
        event.duration,
        event.reason.value,
        s.user_agent,
        s.referrer,
        campaign_of(s.query),
        stamped.player,
        stamped.country,
    )


class SendLock:
    """Who sends from a state file: an advisory lock on a file beside it (`STATE.lock`).

    A sender holds it while it reads a batch from the outbox, posts it and deletes it, so that
    `audimeter run` and `audimeter import` on one state file never both send the same request.
    The kernel drops the lock of a process that dies, whatever the signal.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if no other sender holds it; never waits."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreError(
                    f"cannot open {self.path} ({exc.strerror}); check the permissions of the "
                    "state file's directory"
                ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Store:
    def __init__(
        self, connection: sqlite3.Connection, path: Path, *, shared_sessions: int = 0
    ) -> None:
        self._db = connection
        self.path = path
        self.send_lock = SendLock(path.with_name(path.name + ".lock"))
        self._locks = {MATOMO: self.send_lock}
        self._shared_sessions = shared_sessions
        self._sessions: dict[tuple[Any, ...], Session] | None = {} if shared_sessions else None
        """The open sessions of the journal's events read (`_row`), with `shared_sessions`."""
        self._recent: dict[int, JournalRow] = {}
        """The rows this connection journaled last, by seq, oldest first (`RECENT_ROWS`)."""
        self._journaled: list[tuple[int, Sequence[Stamped]]] = []
        """The events journaled in the transaction under way, with the seq of the first."""

    @classmethod
    def open(cls, path: Path, *, shared_sessions: int = 0) -> Store:
        """The state file at `path`, created or upgraded as needed.

        `shared_sessions`: how many sessions the events read from the journal may share, to
        spare building one per event. An import reads each session's events close together;
        the daemon reads one event per session every few minutes, and would only hold them.
        """
        try:
            if path.parent != Path():
                path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            _prepare(db, path)
        except sqlite3.OperationalError as exc:
            # Permissions, a read-only file system or a full disk: the file itself may be fine.
            raise StoreError(
                f"state file {path} cannot be opened for writing ({exc}); check its "
                "permissions, those of its directory, and free space"
            ) from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"state file {path} cannot be used ({exc}); it was left untouched: move it "
                "aside to start afresh, or restore a backup"
            ) from None
        except OSError as exc:
            raise StoreError(f"state file {path} cannot be created ({exc.strerror})") from None
        return cls(db, path, shared_sessions=shared_sessions)

    @classmethod
    def open_exclusive(cls, path: Path, timeout: float = 2.0) -> Store:
        """An existing state file, held by this connection alone until `close`.

        Raises `StoreBusy` while another process has it open: `audimeter run` keeps its
        connection for as long as it runs. The file is not created when missing.
        """
        try:
            db = sqlite3.connect(
                path.resolve().as_uri() + "?mode=rw",
                uri=True,
                isolation_level=None,
                timeout=timeout,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"state file {path} cannot be opened ({exc})") from None
        try:
            # In WAL mode an exclusive locking mode takes the file for good at the first
            # access, and cannot get it while another connection has the file open.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("BEGIN EXCLUSIVE")
            db.execute("COMMIT")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA secure_delete=ON")
            _prepare(db, path)
        except sqlite3.OperationalError as exc:
            db.close()
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "locked" in str(
                exc
            ):
                raise StoreBusy(
                    f"state file {path} is in use by another process (is `audimeter run` or "
                    "`audimeter import` running with it?): stop it, then try again"
                ) from None
            raise StoreError(f"state file {path} cannot be used ({exc})") from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"state file {path} cannot be used ({exc})") from None
        except StoreError:
            db.close()
            raise
        return cls(db, path)

    def output_lock(self, output: str) -> SendLock:
        """The lock an output holds while it writes a batch and moves its cursor (Matomo's is
        `send_lock`, `STATE.lock`; the others' `STATE.NAME.lock`)."""
        if output not in self._locks:
            self._locks[output] = SendLock(self.path.with_name(f"{self.path.name}.{output}.lock"))
        return self._locks[output]

    def close(self) -> None:
        for lock in self._locks.values():
            lock.close()
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; any SQLite failure becomes a `StoreError` that says so."""
        journaled = self._journaled = []
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot write the state file {self.path} ({exc}); check free space and "
                "permissions, then start audimeter again: nothing committed is lost"
            ) from None
        finally:
            self._journaled = []
        self._remember(journaled)  # committed: what was rolled back is never read

    def _remember(self, journaled: Sequence[tuple[int, Sequence[Stamped]]]) -> None:
        recent = self._recent
        for first, events in journaled:
            # Only the last ones stay: an import journals 20,000 at a time.
            skip = max(0, len(events) - RECENT_ROWS)
            for seq, stamped in enumerate(events[skip:], first + skip):
                recent[seq] = JournalRow(seq, stamped.event, stamped.visitor_id)
        for seq in list(itertools.islice(recent, max(0, len(recent) - RECENT_ROWS))):
            del recent[seq]

    # -- identity -------------------------------------------------------------------------------

    def salt(self) -> str:
        """The visitor-id salt, generated on first use and kept for good."""
        row = self._db.execute("SELECT value FROM meta WHERE key='visitor_salt'").fetchone()
        if row is not None:
            return str(row[0])
        with self._transaction() as db:
            # Another process on the same file (run, import) may have made it meanwhile.
            db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('visitor_salt', ?)",
                (secrets.token_hex(32),),
            )
            row = db.execute("SELECT value FROM meta WHERE key='visitor_salt'").fetchone()
        return str(row[0])

    def period_salt(self, period: str) -> str:
        """The visitor-id salt of a rotation period, generated on first use and kept until
        `prune_salts` leaves it out."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO salts(period, salt) VALUES (?, ?)",
                (period, secrets.token_hex(32)),
            )
            row = db.execute("SELECT salt FROM salts WHERE period=?", (period,)).fetchone()
        return str(row[0])

    def salt_periods(self) -> list[str]:
        """The periods whose salts are kept, in order."""
        return [str(row[0]) for row in self._db.execute("SELECT period FROM salts ORDER BY 1")]

    def prune_salts(self, keep: Collection[str]) -> int:
        """Delete the salts of every period but `keep`; returns how many were deleted."""
        kept = list(keep)
        marks = ",".join("?" * len(kept))
        with self._transaction() as db:
            cursor = db.execute(f"DELETE FROM salts WHERE period NOT IN ({marks})", kept)  # noqa: S608
        return cursor.rowcount

    def open_session_days(self) -> list[int]:
        """The UTC days (unix time // 86400) in which the stored open sessions started."""
        rows = self._db.execute("SELECT DISTINCT started_at / 86400 FROM sessions")
        return [int(row[0]) for row in rows]

    # -- sessionizer state ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A read of the saved state; a damaged file becomes a `StoreError`, left untouched."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"state file {self.path} is damaged ({exc}); it was left untouched: move it "
                "aside to start afresh, or restore a backup"
            ) from None

    def load_mounts(self) -> list[MountRecord]:
        with self._reading():
            rows = self._db.execute("SELECT source, instance, mount, last_seen FROM mounts")
            return [MountRecord(*row) for row in rows]

    def load_sessions(self) -> list[Session]:
        with self._reading():
            rows = self._db.execute(
                "SELECT source, instance, mount, client_id, ip, user_agent, referrer,"
                " started_at, slot, query FROM sessions ORDER BY started_at"
            )
            return [Session(*row) for row in rows]

    def load_remembered(self) -> list[SessionRemembered]:
        """Ended sessions kept so that a late notice of their end is recognised."""
        with self._reading():
            rows = self._db.execute(
                "SELECT source, instance, mount, client_id, ip, user_agent, referrer,"
                " started_at, slot, query, ended_at, seen_at, exact FROM ended"
            )
            return [
                SessionRemembered(Session(*row[:10]), int(row[10]), int(row[11]), bool(row[12]))
                for row in rows
            ]

    def load_instances(self) -> dict[str, str]:
        """The server instance last seen for each source."""
        with self._reading():
            rows = self._db.execute("SELECT source, instance FROM instances")
            return {str(source): str(instance) for source, instance in rows}

    def load_gone(self) -> dict[tuple[str, str, str, str], int]:
        """Sessions waiting for their exact end, with their last sighting."""
        with self._reading():
            rows = self._db.execute(
                "SELECT source, instance, mount, client_id, gone_at FROM sessions"
                " WHERE gone_at IS NOT NULL"
            )
            return {(row[0], row[1], row[2], row[3]): int(row[4]) for row in rows}

    def commit(
        self,
        changes: Sequence[StateChange],
        mounts: Iterable[MountRecord],
        events: Sequence[Stamped],
        *,
        instances: Mapping[str, str] | None = None,
        consumed_inbox: Sequence[int] = (),
        inbox_position: tuple[str, int] | None = None,
        log_positions: Sequence[LogPosition] = (),
        plays: Sequence[PlayChange] = (),
    ) -> None:
        """Write one step's outcome atomically: session changes, mount times, the events into
        the journal and the sessions they end into the history (and the server instance of
        each source, when given), the titles on air that started and ended.

        `consumed_inbox` are the inbox rows this step turned into observations (those kept in
        this file by earlier versions), `inbox_position` the inbox file's token and its last
        notice taken (see audimeter.inbox), and `log_positions` how far log files were read for
        it: all move with the step's outcome.
        """
        with self._transaction():
            for change in changes:
                s = change.session
                if isinstance(change, SessionOpened):
                    self._db.execute(
                        "INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,NULL)",
                        (
                            s.source,
                            s.instance,
                            s.mount,
                            s.client_id,
                            s.ip,
                            s.user_agent,
                            s.referrer,
                            s.started_at,
                            s.slot,
                            s.query,
                        ),
                    )
                elif isinstance(change, SessionGone):
                    self._db.execute(
                        "UPDATE sessions SET gone_at=?"
                        " WHERE source=? AND instance=? AND mount=? AND client_id=?",
                        (change.last_seen, *s.key),
                    )
                elif isinstance(change, SessionClosed):
                    self._db.execute(
                        "DELETE FROM sessions"
                        " WHERE source=? AND instance=? AND mount=? AND client_id=?",
                        s.key,
                    )
                elif isinstance(change, SessionRemembered):
                    self._db.execute(
                        "INSERT OR REPLACE INTO ended VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            *s.key,
                            s.ip,
                            s.user_agent,
                            s.referrer,
                            s.started_at,
                            s.slot,
                            s.query,
                            change.end,
                            change.seen,
                            int(change.exact),
                        ),
                    )
                elif isinstance(change, SessionForgotten):
                    self._db.execute(
                        "DELETE FROM ended"
                        " WHERE source=? AND instance=? AND mount=? AND client_id=?",
                        s.key,
                    )
            self._db.execute("DELETE FROM mounts")
            self._db.executemany(
                "INSERT INTO mounts(source, instance, mount, last_seen) VALUES (?,?,?,?)",
                [(m.source, m.instance, m.mount, m.last_seen) for m in mounts],
            )
            if instances is not None:
                self._db.execute("DELETE FROM instances")
                self._db.executemany("INSERT INTO instances VALUES (?,?)", instances.items())
            self._journal(events)
            self._plays(plays)
            self._db.executemany("DELETE FROM inbox WHERE id=?", [(i,) for i in consumed_inbox])
            if inbox_position is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('inbox_position', ?)",
                    (f"{inbox_position[0]}:{inbox_position[1]}",),
                )
            self._db.executemany(
                "INSERT OR REPLACE INTO log_positions VALUES (?,?,?,?)",
                [(p.source, p.path, p.inode, p.offset) for p in log_positions],
            )

    def _journal(self, events: Sequence[Stamped]) -> None:
        """Append events to the journal, and the sessions they end to the history (inside a
        transaction)."""
        if not events:
            return
        self._db.executemany(
            f"INSERT INTO journal({_FIELDS}) VALUES ({_MARKS})",  # noqa: S608 (fixed names)
            [_values(stamped) for stamped in events],
        )
        # One statement under the write lock: its rows have consecutive seqs up to the last.
        (last,) = self._db.execute("SELECT last_insert_rowid()").fetchone()
        self._journaled.append((int(last) - len(events) + 1, events))
        ended = [row for stamped in events if (row := _history_values(stamped)) is not None]
        self._db.executemany(
            "INSERT INTO history(source, mount, site_id, visitor_id, started_at, ended_at,"
            " seconds, reason, user_agent, referrer, campaign, player, country)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ended,
        )

    def _plays(self, changes: Sequence[PlayChange]) -> None:
        """Record plays as they start (open: no end) and end (inside a transaction)."""
        for change in changes:
            play = change.play
            if isinstance(change, PlayStarted):
                self._db.execute(
                    "INSERT INTO titles(source, mount, title, started_at) VALUES (?,?,?,?)",
                    (play.source, play.mount, play.title, play.started_at),
                )
            else:
                self._db.execute(
                    "UPDATE titles SET ended_at=?"
                    " WHERE source=? AND mount=? AND started_at=? AND ended_at IS NULL",
                    (change.ended_at, play.source, play.mount, play.started_at),
                )

    def load_plays(self) -> list[Play]:
        """The titles on air when the state was last written (plays not ended)."""
        with self._reading():
            rows = self._db.execute(
                "SELECT source, mount, title, started_at FROM titles WHERE ended_at IS NULL"
            )
            return [Play(*row) for row in rows]

    def title_at(self, source: str, mount: str, at: int) -> str:
        """The title on air on a mount at the instant `at` ("" for none known)."""
        row = self._db.execute(
            "SELECT title, ended_at FROM titles WHERE source=? AND mount=? AND started_at<=?"
            " ORDER BY started_at DESC, id DESC LIMIT 1",
            (source, mount, at),
        ).fetchone()
        if row is None or (row[1] is not None and row[1] <= at):
            return ""
        return str(row[0])

    # -- the journal and its readers' cursors -------------------------------------------------

    def last_seq(self) -> int:
        """The seq of the newest event ever journaled (0 for none), also once it is pruned."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='journal'").fetchone()
        return int(row[0]) if row else 0

    def prepare_cursors(self, outputs: Collection[str], *, drop_others: bool) -> list[str]:
        """Give each output a cursor (a new one reads every event still in the journal); with
        `drop_others`, delete the cursors of outputs not named: returns their names."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO cursors(output, seq) VALUES (?, 0)",
                [(name,) for name in outputs],
            )
            dropped = [
                str(row[0])
                for row in db.execute("SELECT output FROM cursors ORDER BY 1")
                if row[0] not in outputs
            ]
            if drop_others:
                db.executemany("DELETE FROM cursors WHERE output=?", [(n,) for n in dropped])
        return dropped if drop_others else []

    def cursors(self) -> dict[str, int]:
        return {str(name): int(seq) for name, seq in self._db.execute("SELECT * FROM cursors")}

    def cursor(self, output: str) -> int:
        row = self._db.execute("SELECT seq FROM cursors WHERE output=?", (output,)).fetchone()
        return int(row[0]) if row else 0

    def advance(self, output: str, seq: int) -> None:
        """Move an output's cursor to `seq`: it has every event up to there (never back)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO cursors(output, seq) VALUES (?, ?)"
                " ON CONFLICT(output) DO UPDATE SET seq=max(seq, excluded.seq)",
                (output, seq),
            )

    def journal_batch(self, after: int, limit: int, upto: int | None = None) -> list[JournalRow]:
        """The events after seq `after`, oldest first; with `upto`, only those up to it.

        Those this connection journaled last come as they were journaled: every output reads
        each event, and reading them back from the file cost the daemon more than writing them.
        The rest, and what others journaled in between, come from the file.
        """
        last = sys.maxsize if upto is None else upto
        rows: list[JournalRow] = []
        recent = self._recent
        seq = after + 1
        while len(rows) < limit and seq <= last and (row := recent.get(seq)) is not None:
            rows.append(row)
            seq += 1
        if len(rows) == limit or seq > last:
            return rows
        found = self._db.execute(
            f"SELECT seq, {_FIELDS} FROM journal WHERE seq > ? AND seq <= ?"  # noqa: S608
            " ORDER BY seq LIMIT ?",
            (seq - 1, last, limit - len(rows)),
        )
        sessions, shared = self._sessions, self._shared_sessions
        rows += [_row(row[0], row[1:], sessions, shared) for row in found]
        return rows

    def oldest_pending(self, output: str) -> int | None:
        """The event time of the oldest event `output` has not taken (Matomo's parked events
        included), None when it has taken them all or its age is unknown (requests journaled
        ready-made by an earlier schema have no event time); two indexed look-ups."""
        row = self._db.execute(
            "SELECT at FROM journal WHERE seq > (SELECT seq FROM cursors WHERE output=?)"
            " ORDER BY seq LIMIT 1",
            (output,),
        ).fetchone()
        oldest = int(row[0]) if row is not None and row[0] else None
        if output == MATOMO:
            parked = self._db.execute("SELECT min(NULLIF(at, 0)) FROM parked").fetchone()[0]
            if parked is not None and (oldest is None or parked < oldest):
                oldest = int(parked)
        return oldest

    def journal_count(self, after: int, upto: int, *, instance: str = "*") -> int:
        """How many events with a seq above `after`, up to `upto`, are in the journal; with
        `instance`, only those of sessions whose instance matches that GLOB pattern."""
        row = self._db.execute(
            "SELECT count(*) FROM journal WHERE seq > ? AND seq <= ? AND instance GLOB ?",
            (after, upto, instance),
        ).fetchone()
        return int(row[0])

    def prune_journal(self, batch: int = PRUNE_BATCH) -> int:
        """Delete up to `batch` events every output has passed; returns how many."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM journal WHERE seq <= min("
                " (SELECT min(seq) FROM cursors), (SELECT min(seq) FROM journal) + ?)",
                (batch,),
            )
            (kept,) = db.execute("SELECT min(seq) FROM journal").fetchone()
        recent = self._recent
        for seq in [seq for seq in recent if kept is None or seq < kept]:
            del recent[seq]
        return cursor.rowcount

    def prune_keepalives(self, after: int, upto: int) -> int:
        """Delete the keep-alives with a seq above `after` up to `upto`: only outputs that are
        over their limit, and skip keep-alives, have not passed them."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM journal WHERE seq > ? AND seq <= ? AND kind='keepalive'",
                (after, upto),
            )
        self._recent.clear()  # nor handed out from memory
        return cursor.rowcount

    def queue_requests(self, payloads: Sequence[str]) -> None:
        """Journal ready-made Matomo requests, as an earlier schema's outbox held them."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO journal(kind, payload) VALUES (?, ?)",
                [(REQUEST, payload) for payload in payloads],
            )

    # -- Matomo: parked requests and dead letters -----------------------------------------------

    def matomo_batch(self, limit: int, upto: int | None = None) -> tuple[list[JournalRow], bool]:
        """Matomo's next batch, and whether it is of released parked events: those go first,
        since they are older than the journal's for their site."""
        rows = self._db.execute(
            f"SELECT seq, {_FIELDS} FROM parked WHERE held=0 ORDER BY seq LIMIT ?",  # noqa: S608
            (limit,),
        ).fetchall()
        if rows:
            return [_row(row[0], row[1:]) for row in rows], True
        return self.journal_batch(self.cursor(MATOMO), limit, upto), False

    def matomo_backlog(self) -> int:
        """An upper bound of the events Matomo has not taken (parked ones included), cheap
        however many they are."""
        row = self._db.execute(
            "SELECT (SELECT seq FROM cursors WHERE output=?), (SELECT count(*) FROM parked)",
            (MATOMO,),
        ).fetchone()
        return self.last_seq() - int(row[0] or 0) + int(row[1])

    def matomo_pending(self) -> int:
        """Events not yet accepted by Matomo: those in the journal past its cursor and the
        parked ones."""
        row = self._db.execute("SELECT count(*) FROM parked").fetchone()
        return self.journal_count(self.cursor(MATOMO), sys.maxsize) + int(row[0])

    def unpark(self, seqs: Sequence[int]) -> None:
        """Matomo took these released parked events."""
        with self._transaction() as db:
            db.executemany("DELETE FROM parked WHERE seq=?", [(seq,) for seq in seqs])

    def dead_letter(self, rows: Sequence[JournalRow], reason: str) -> None:
        """Keep events Matomo refused, with Matomo's reason."""
        now = int(time.time())
        with self._transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO dead_letter(seq, failure, failed_at, {_FIELDS})"  # noqa: S608
                f" VALUES (?, ?, ?, {_MARKS})",
                [(row.seq, reason, now, *_row_values(row)) for row in rows],
            )
            db.executemany("DELETE FROM parked WHERE seq=?", [(row.seq,) for row in rows])

    def park(self, rows: Sequence[tuple[JournalRow, int]]) -> None:
        """Keep events for a site Matomo refuses, each under its site (`(row, site)`)."""
        now = int(time.time())
        with self._transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO parked(seq, site, held, parked_at, {_FIELDS})"  # noqa: S608
                f" VALUES (?, ?, 1, ?, {_MARKS})",
                [(row.seq, site, now, *_row_values(row)) for row, site in rows],
            )

    def parked_sites(self) -> dict[int, int]:
        """How many events are parked, per site."""
        rows = self._db.execute("SELECT site, count(*) FROM parked WHERE held=1 GROUP BY site")
        return {int(site): int(count) for site, count in rows}

    def release(self, site: int) -> int:
        """Let the parked events of `site` go to Matomo again, before any later event of the
        journal; returns how many."""
        with self._transaction() as db:
            cursor = db.execute("UPDATE parked SET held=0 WHERE site=? AND held=1", (site,))
        return cursor.rowcount

    def dead_letter_count(self, first: int, last: int, *, instance: str = "*") -> int:
        """How many dead letters have a seq from `first` to `last`; with `instance`, only those
        of sessions whose instance matches that GLOB pattern."""
        row = self._db.execute(
            "SELECT count(*) FROM dead_letter WHERE seq BETWEEN ? AND ? AND instance GLOB ?",
            (first, last, instance),
        ).fetchone()
        return int(row[0])

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._db.execute(
            f"SELECT seq, {_FIELDS}, failure, failed_at FROM dead_letter ORDER BY seq"  # noqa: S608
        )
        return [DeadLetter(_row(row[0], row[1:17]), row[17], row[18]) for row in rows]

    # -- what `audimeter status` reads ---------------------------------------------------------

    def record_run(self, started_at: float, sources: Iterable[SourceStatus]) -> None:
        """A run starts: its start time and its sources (those of an earlier run go)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                (RUN_STARTED, repr(started_at)),
            )
            db.execute("DELETE FROM meta WHERE key=?", (LOOP_BEAT,))
            db.execute("DELETE FROM source_status")
            db.executemany(
                "INSERT INTO source_status VALUES (?,?,?,?,?,?)",
                [(s.name, s.kind, s.software, s.grace, s.last_ok, s.problem) for s in sources],
            )

    def record_source(self, s: SourceStatus) -> None:
        """A source's poll ended."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO source_status VALUES (?,?,?,?,?,?)",
                (s.name, s.kind, s.software, s.grace, s.last_ok, s.problem),
            )

    def record_beat(self, at: float | None) -> None:
        """The main loop's last round, None once it stopped."""
        with self._transaction() as db:
            if at is None:
                db.execute("DELETE FROM meta WHERE key=?", (LOOP_BEAT,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (LOOP_BEAT, repr(at))
                )

    # -- history ------------------------------------------------------------------------------

    def prune_history(self, before: int) -> int:
        """Delete the finished sessions, and the plays, that ended before `before`; returns how
        many sessions."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM history WHERE ended_at < ?", (before,))
            db.execute("DELETE FROM titles WHERE ended_at < ?", (before,))
        return cursor.rowcount

    # -- inbox: webhook notices; the inbox file's position, and rows an earlier version kept here

    def inbox_position(self, token: str) -> int:
        """The last notice taken from the inbox file with this token (0: none of it yet)."""
        row = self._db.execute("SELECT value FROM meta WHERE key='inbox_position'").fetchone()
        if row is None:
            return 0
        stored_token, _, position = str(row[0]).partition(":")
        return int(position) if stored_token == token else 0

    def inbox_batch(self, limit: int) -> list[tuple[int, str]]:
        rows = self._db.execute("SELECT id, payload FROM inbox ORDER BY id LIMIT ?", (limit,))
        return [(int(row[0]), str(row[1])) for row in rows]

    # -- followed log files -------------------------------------------------------------------

    def log_position(self, source: str, path: str) -> LogPosition | None:
        row = self._db.execute(
            "SELECT source, path, inode, offset FROM log_positions WHERE source=? AND path=?",
            (source, path),
        ).fetchone()
        return LogPosition(*row) if row else None

    # -- imported log files -------------------------------------------------------------------

    def import_progress(self, file_key: str) -> int | None:
        """None when the file was imported in full; otherwise how many of its requests an
        interrupted import already queued (0 for a file never imported)."""
        if self._db.execute("SELECT 1 FROM imports WHERE file_key=?", (file_key,)).fetchone():
            return None
        row = self._db.execute(
            "SELECT value FROM meta WHERE key=?", (_import_progress_key(file_key),)
        ).fetchone()
        return int(row[0]) if row else 0

    def commit_import(
        self,
        file_key: str,
        source: str,
        path: str,
        lines: int,
        events: Iterable[Stamped],
        *,
        done: int = 0,
        chunk: int = IMPORT_CHUNK,
    ) -> None:
        """Journal one imported file's events, `events` (those from the `done`-th on, taken as
        they come), and the sessions they end into the history, then remember the file.

        One transaction per `chunk` events, each also recording how many are queued, so that
        an import stopped midway goes on where it stopped when run again (`import_progress`).
        Raises `StoreError` when another import of the same content got there first.
        """
        progress = _import_progress_key(file_key)
        position = done
        pending = iter(events)
        while True:
            part = list(itertools.islice(pending, chunk))
            now = int(time.time())
            with self._transaction() as db:
                queued = db.execute("SELECT value FROM meta WHERE key=?", (progress,)).fetchone()
                imported = db.execute(
                    "SELECT 1 FROM imports WHERE file_key=?", (file_key,)
                ).fetchone()
                if imported or (int(queued[0]) if queued else 0) != position:
                    raise StoreError(
                        f"{path}: another `audimeter import` of the same content is running "
                        "or just finished; nothing more was queued by this one"
                    )
                self._journal(part)
                position += len(part)
                if len(part) < chunk:
                    db.execute("DELETE FROM meta WHERE key=?", (progress,))
                    db.execute(
                        "INSERT INTO imports VALUES (?,?,?,?,?)",
                        (file_key, source, path, lines, now),
                    )
                    return
                db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    (progress, str(position)),
                )

    # -- forgetting a listener ------------------------------------------------------------------

    def forget(self, *, address: Callable[[str], bool], notice: Callable[[str], bool]) -> Forgotten:
        """Delete what the file holds about the listener addresses `address` picks: open
        sessions and ended ones kept for a while, journaled, parked and refused events (by
        their `ip`; ready-made requests of an earlier schema by their `cip`), the finished
        sessions in the history with the visitor ids of those events, and the inbox notices
        `notice` picks.

        Meant for a store from `open_exclusive` (secure delete on). The file is then rebuilt
        (VACUUM) and its write-ahead log emptied, so that no copy of a deleted row stays behind
        in free pages, including rows deleted earlier without secure delete.
        """
        self._recent.clear()  # none of them handed out from memory either
        try:
            picked = {
                table: [
                    (source, instance, mount, client_id)
                    for source, instance, mount, client_id, ip in self._db.execute(
                        f"SELECT source, instance, mount, client_id, ip FROM {table}"  # noqa: S608
                    )
                    if address(ip)
                ]
                for table in ("sessions", "ended")
            }
            visitors: set[str] = set()
            events = {
                table: self._pick_events(table, address, visitors)
                for table in ("journal", "parked", "dead_letter")
            }
            history = [
                int(row[0])
                for row in self._db.execute("SELECT id, visitor_id FROM history")
                if row[1] in visitors
            ]
            inbox = [
                int(row_id)
                for row_id, payload in self._db.execute("SELECT id, payload FROM inbox")
                if notice(str(payload))
            ]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the state file {self.path} ({exc})") from None
        with self._transaction() as db:
            for table, keys in picked.items():
                db.executemany(
                    f"DELETE FROM {table}"  # noqa: S608 (fixed names)
                    " WHERE source=? AND instance=? AND mount=? AND client_id=?",
                    keys,
                )
            for table, seqs in events.items():
                db.executemany(f"DELETE FROM {table} WHERE seq=?", [(i,) for i in seqs])  # noqa: S608
            db.executemany("DELETE FROM history WHERE id=?", [(i,) for i in history])
            db.executemany("DELETE FROM inbox WHERE id=?", [(i,) for i in inbox])
        try:
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StoreError(
                f"the rows are deleted, but the state file {self.path} could not be compacted "
                f"({exc}): copies of them may remain in its free space until it is"
            ) from None
        return Forgotten(
            len(picked["sessions"]),
            len(events["journal"]) + len(events["parked"]),
            len(events["dead_letter"]),
            len(inbox),
            len(picked["ended"]),
            len(history),
        )

    def _pick_events(
        self, table: str, address: Callable[[str], bool], visitors: set[str]
    ) -> list[int]:
        """The seqs of the events in `table` of the addresses `address` picks; adds their
        visitor ids to `visitors`."""
        picked = []
        rows = self._db.execute(f"SELECT seq, ip, visitor_id, payload FROM {table}")  # noqa: S608
        for seq, ip, visitor, payload in rows:
            if payload is not None:  # a ready-made request: its address is its `cip`
                query = parse_qs(str(payload).partition("?")[2] or str(payload))
                ip = query.get("cip", [""])[0]
                visitor = query.get("cid", [""])[0]
            if ip and address(str(ip)):
                picked.append(int(seq))
                if visitor:
                    visitors.add(str(visitor))
        return picked


def _import_progress_key(file_key: str) -> str:
    return f"import_progress:{file_key}"


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables that are missing, upgrade an earlier schema, refuse a newer one."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(db)
        if version is not None and version != SCHEMA_VERSION and version not in UPGRADABLE:
            raise StoreError(
                f"state file {path} has schema version {version}, this audimeter "
                f"understands {SCHEMA_VERSION}: use the matching audimeter version"
            )
        old = version is not None and version < SCHEMA_VERSION
        queues = version is not None and version < JOURNAL_SCHEMA  # requests, not events
        if queues:
            for table in _QUEUES:
                if _has_table(db, table):
                    db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        if queues:
            _upgrade_queues(db)
        if old:
            _upgrade_history(db)
        if version != SCHEMA_VERSION:  # a file in use is left byte for byte as it was
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


_QUEUES = ("outbox", "parked", "dead_letter")
"""The tables of Matomo requests before schema 4, which journals events instead."""


def _schema_version(db: sqlite3.Connection) -> int | None:
    if not _has_table(db, "meta"):
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else None


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return found.fetchone() is not None


def _upgrade_history(db: sqlite3.Connection) -> None:
    """Give the history of schema 4 its `player` and `country` columns: the player named from
    the user agent kept (few distinct ones), the country unknown (the address is not kept)."""
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(history)")}
    if "player" in columns:
        return
    db.execute("ALTER TABLE history ADD COLUMN player TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE history ADD COLUMN country TEXT NOT NULL DEFAULT ''")
    agents = [str(row[0]) for row in db.execute("SELECT DISTINCT user_agent FROM history")]
    db.executemany(
        "UPDATE history SET player=? WHERE user_agent=?",
        [(player_name(agent), agent) for agent in agents],
    )


def _upgrade_queues(db: sqlite3.Connection) -> None:
    """Carry the requests an earlier schema queued over as ready-made requests, under their
    ids: the queued ones into the journal, ahead of every event journaled from now on, the
    parked and refused ones into `parked` and `dead_letter`."""
    highest = 0
    if _has_table(db, "old_outbox"):
        db.execute(
            "INSERT INTO journal(seq, kind, payload) SELECT id, ?, payload FROM old_outbox",
            (REQUEST,),
        )
        row = db.execute(
            "SELECT max((SELECT max(id) FROM old_outbox),"
            " (SELECT seq FROM sqlite_sequence WHERE name IN ('outbox', 'old_outbox')))"
        ).fetchone()
        highest = int(row[0] or 0)
    if _has_table(db, "old_parked"):
        db.execute(
            "INSERT INTO parked(seq, site, held, parked_at, kind, payload)"
            " SELECT id, site, 1, parked_at, ?, payload FROM old_parked",
            (REQUEST,),
        )
        highest = max(highest, int(db.execute("SELECT max(id) FROM old_parked").fetchone()[0] or 0))
    if _has_table(db, "old_dead_letter"):
        db.execute(
            "INSERT INTO dead_letter(seq, failure, failed_at, kind, payload)"
            " SELECT id, reason, failed_at, ?, payload FROM old_dead_letter",
            (REQUEST,),
        )
        row = db.execute("SELECT max(id) FROM old_dead_letter").fetchone()
        highest = max(highest, int(row[0] or 0))
    # New events take seqs above every id queued before, so none meets an old parked one.
    db.execute("DELETE FROM sqlite_sequence WHERE name='journal'")
    db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('journal', ?)", (highest,))
    for table in _QUEUES:
        db.execute(f"DROP TABLE IF EXISTS old_{table}")
