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
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from audimeter.events import Session
from audimeter.observations import LogPosition
from audimeter.sessionizer import (
    MountRecord,
    SessionClosed,
    SessionForgotten,
    SessionGone,
    SessionOpened,
    SessionRemembered,
    StateChange,
)

SCHEMA_VERSION = 3
UPGRADABLE = {1, 2}
"""Schema versions this one upgrades: version 2 only added the tables `ended` and `instances`,
version 3 the table `parked`; the schema script creates them when they are missing."""

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
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS parked (
    id INTEGER PRIMARY KEY,
    site INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    parked_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS parked_by_site ON parked(site, id);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at INTEGER NOT NULL
);
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
CREATE TABLE IF NOT EXISTS salts (
    period TEXT PRIMARY KEY,
    salt TEXT NOT NULL
) WITHOUT ROWID;
"""


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
    outbox: int = 0
    dead_letters: int = 0
    inbox: int = 0
    ended_sessions: int = 0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    payload: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    payload: str
    reason: str
    failed_at: int


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
    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self.send_lock = SendLock(path.with_name(path.name + ".lock"))

    @classmethod
    def open(cls, path: Path) -> Store:
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
        return cls(db, path)

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

    def close(self) -> None:
        self.send_lock.close()
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; any SQLite failure becomes a `StoreError` that says so."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot write the state file {self.path} ({exc}); check free space and "
                "permissions, then start audimeter again: nothing committed is lost"
            ) from None

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
        outbox: Sequence[str],
        *,
        instances: Mapping[str, str] | None = None,
        consumed_inbox: Sequence[int] = (),
        log_positions: Sequence[LogPosition] = (),
    ) -> None:
        """Write one step's outcome atomically: session changes, mount times, new requests
        (and the server instance of each source, when given).

        `consumed_inbox` are the inbox rows this step turned into observations, and
        `log_positions` how far log files were read for it: both move with the step's outcome.
        """
        now = int(time.time())
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
            self._db.executemany(
                "INSERT INTO outbox(payload, created_at) VALUES (?, ?)",
                [(payload, now) for payload in outbox],
            )
            self._db.executemany("DELETE FROM inbox WHERE id=?", [(i,) for i in consumed_inbox])
            self._db.executemany(
                "INSERT OR REPLACE INTO log_positions VALUES (?,?,?,?)",
                [(p.source, p.path, p.inode, p.offset) for p in log_positions],
            )

    # -- outbox ---------------------------------------------------------------------------------

    def outbox_batch(self, limit: int, upto: int | None = None) -> list[OutboxRow]:
        """The oldest requests of the outbox; with `upto`, only those with an id up to it."""
        rows = self._db.execute(
            "SELECT id, payload FROM outbox WHERE id <= ? ORDER BY id LIMIT ?",
            (sys.maxsize if upto is None else upto, limit),
        )
        return [OutboxRow(*row) for row in rows]

    def outbox_last_id(self) -> int:
        """The id of the newest request in the outbox, 0 when it is empty."""
        return int(self._db.execute("SELECT max(id) FROM outbox").fetchone()[0] or 0)

    def outbox_count(self, first: int, last: int) -> int:
        """How many requests with an id from `first` to `last` are still in the outbox."""
        row = self._db.execute(
            "SELECT count(*) FROM outbox WHERE id BETWEEN ? AND ?", (first, last)
        ).fetchone()
        return int(row[0])

    def outbox_first_id(self) -> int:
        """The id of the oldest request in the outbox, 0 when it is empty."""
        return int(self._db.execute("SELECT min(id) FROM outbox").fetchone()[0] or 0)

    def outbox_span(self) -> int:
        """An upper bound of the outbox's size (parked requests included), cheap however large
        it is."""
        row = self._db.execute(
            "SELECT (SELECT max(id) - min(id) + 1 FROM outbox), (SELECT count(*) FROM parked)"
        ).fetchone()
        return int(row[0] or 0) + int(row[1])

    def outbox_size(self) -> int:
        """Requests not yet accepted by Matomo: those waiting in the outbox and the parked ones."""
        row = self._db.execute(
            "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM parked)"
        ).fetchone()
        return int(row[0]) + int(row[1])

    def acknowledge(self, ids: Sequence[int]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])

    def dead_letter(self, rows: Sequence[OutboxRow], reason: str) -> None:
        """Move requests Matomo refused out of the outbox, keeping them with Matomo's reason."""
        now = int(time.time())
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO dead_letter(id, payload, reason, failed_at)"
                " VALUES (?,?,?,?)",
                [(row.id, row.payload, reason, now) for row in rows],
            )
            db.executemany("DELETE FROM outbox WHERE id=?", [(row.id,) for row in rows])

    def park(self, rows: Sequence[tuple[OutboxRow, int]]) -> None:
        """Move requests out of the outbox into `parked`, each under its site (`(row, site)`)."""
        now = int(time.time())
        with self._transaction() as db:
            for row, site in rows:
                db.execute(
                    "INSERT OR REPLACE INTO parked(id, site, payload, created_at, parked_at)"
                    " SELECT id, ?, payload, created_at, ? FROM outbox WHERE id=?",
                    (site, now, row.id),
                )
                db.execute("DELETE FROM outbox WHERE id=?", (row.id,))

    def parked_sites(self) -> dict[int, int]:
        """How many requests are parked, per site."""
        rows = self._db.execute("SELECT site, count(*) FROM parked GROUP BY site")
        return {int(site): int(count) for site, count in rows}

    def release(self, site: int) -> int:
        """Put the parked requests of `site` back into the outbox; returns how many.

        They keep their outbox ids (never reused), so they leave before any request queued
        for the site since, and each visitor's requests stay in time order.
        """
        with self._transaction() as db:
            db.execute(
                "INSERT INTO outbox(id, payload, created_at)"
                " SELECT id, payload, created_at FROM parked WHERE site=? ORDER BY id",
                (site,),
            )
            cursor = db.execute("DELETE FROM parked WHERE site=?", (site,))
        return cursor.rowcount

    def dead_letter_count(self, first: int, last: int) -> int:
        """How many dead letters have an (outbox) id from `first` to `last`."""
        row = self._db.execute(
            "SELECT count(*) FROM dead_letter WHERE id BETWEEN ? AND ?", (first, last)
        ).fetchone()
        return int(row[0])

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._db.execute(
            "SELECT id, payload, reason, failed_at FROM dead_letter ORDER BY id"
        )
        return [DeadLetter(*row) for row in rows]

    # -- inbox: events received from servers, kept until the pipeline has taken them ---------

    def append_inbox(self, payload: str) -> int:
        """Record one received event durably, also against a power loss; returns its id."""
        # The sender is told at once that it is recorded and never sends it again, so this
        # commit waits for the disk (FULL); the others may be undone by a power loss (NORMAL)
        # and are found again by the next poll, at a cost that FULL would add to each of them.
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction() as db:
                cursor = db.execute("INSERT INTO inbox(payload) VALUES (?)", (payload,))
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")
        return int(cursor.lastrowid or 0)

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
        outbox: Sequence[str],
        *,
        done: int = 0,
        chunk: int = IMPORT_CHUNK,
    ) -> None:
        """Queue one imported file's requests from the `done`-th on, then remember the file.

        One transaction per `chunk` requests, each also recording how many are queued, so that
        an import stopped midway goes on where it stopped when run again (`import_progress`).
        Raises `StoreError` when another import of the same content got there first.
        """
        progress = _import_progress_key(file_key)
        position = done
        while True:
            part = outbox[position : position + chunk]
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
                db.executemany(
                    "INSERT INTO outbox(payload, created_at) VALUES (?, ?)",
                    [(payload, now) for payload in part],
                )
                position += len(part)
                if position >= len(outbox):
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

    def forget(
        self,
        *,
        session_ip: Callable[[str], bool],
        request: Callable[[str], bool],
        notice: Callable[[str], bool],
    ) -> Forgotten:
        """Delete the sessions (open, or ended and kept for a while) whose address `session_ip`
        picks, the outbox requests (parked ones included) and dead letters whose payload
        `request` picks, and the inbox notices `notice` picks.

        Meant for a store from `open_exclusive` (secure delete on). The file is then rebuilt
        (VACUUM) and its write-ahead log emptied, so that no copy of a deleted row stays behind
        in free pages, including rows deleted earlier without secure delete.
        """
        try:
            picked = {
                table: [
                    (source, instance, mount, client_id)
                    for source, instance, mount, client_id, ip in self._db.execute(
                        f"SELECT source, instance, mount, client_id, ip FROM {table}"  # noqa: S608
                    )
                    if session_ip(ip)
                ]
                for table in ("sessions", "ended")
            }
            outbox = self._pick("outbox", request)
            parked = self._pick("parked", request)
            dead = self._pick("dead_letter", request)
            inbox = self._pick("inbox", notice)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the state file {self.path} ({exc})") from None
        with self._transaction() as db:
            for table, keys in picked.items():
                db.executemany(
                    f"DELETE FROM {table}"  # noqa: S608 (fixed names)
                    " WHERE source=? AND instance=? AND mount=? AND client_id=?",
                    keys,
                )
            for table, ids in (
                ("outbox", outbox),
                ("parked", parked),
                ("dead_letter", dead),
                ("inbox", inbox),
            ):
                db.executemany(f"DELETE FROM {table} WHERE id=?", [(i,) for i in ids])  # noqa: S608
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
            len(outbox) + len(parked),
            len(dead),
            len(inbox),
            len(picked["ended"]),
        )

    def _pick(self, table: str, wanted: Callable[[str], bool]) -> list[int]:
        rows = self._db.execute(f"SELECT id, payload FROM {table}")  # noqa: S608 (fixed names)
        return [int(row_id) for row_id, payload in rows if wanted(str(payload))]


def _import_progress_key(file_key: str) -> str:
    return f"import_progress:{file_key}"


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables that are missing and check the schema version."""
    db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
    version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if version is None or int(version[0]) in UPGRADABLE:
        db.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
            (SCHEMA_VERSION,),
        )
    elif int(version[0]) != SCHEMA_VERSION:
        raise StoreError(
            f"state file {path} has schema version {version[0]}, this audimeter "
            f"understands {SCHEMA_VERSION}: use the matching audimeter version"
        )
