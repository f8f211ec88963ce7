"""The webhook receiver's inbox: a small SQLite file of its own next to the state file.

Why a file of its own: the receiver must have a notice on disk before it answers Icecast, and
Icecast holds the listener until then. In the state file that insert waited for SQLite's write
lock whenever the daemon committed a large poll or an import queued a chunk, for seconds at
times. The inbox file (STATE.inbox) has no other writer than the daemon's small deletions, so an
insert waits for the disk alone.

Nothing lost or taken twice across the two files: the daemon records in the state file, in the
same transaction as the outcome of the notices, the id of the last notice it took, with the inbox
file's identity (a random token made with the file). After a crash it goes on after that id;
notices up to it are deleted from the inbox file afterwards, at leisure. An inbox file replaced or
deleted has another token, so it is read from its start.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path

from audimeter.store import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identity (token TEXT NOT NULL);
"""


def inbox_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".inbox")


class Inbox:
    """One connection to the inbox file (the receiver's process and the daemon each have one)."""

    def __init__(self, path: Path, db: sqlite3.Connection, token: str) -> None:
        self.path = path
        self._db = db
        self.token = token
        """Tells this file from any other that takes its place."""

    @classmethod
    def open(cls, path: Path) -> Inbox:
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # The sender is told at once that a notice is recorded and never sends it again.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            with db:
                db.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.strip().splitlines():
                    db.execute(statement)
                row = db.execute("SELECT token FROM identity").fetchone()
                if row is None:
                    row = (secrets.token_hex(16),)
                    db.execute("INSERT INTO identity VALUES (?)", row)
        except sqlite3.Error as exc:
            raise StoreError(
                f"webhook inbox {path} cannot be used ({exc}); check the permissions of the "
                "state file's directory and free space, or move a damaged inbox file aside"
            ) from None
        return cls(path, db, str(row[0]))

    def close(self) -> None:
        self._db.close()

    def append(self, *payloads: str) -> None:
        """Record notices durably, also against a power loss, in this order and one commit."""
        try:
            with self._db:
                self._db.executemany(
                    "INSERT INTO inbox(payload) VALUES (?)", [(p,) for p in payloads]
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the webhook inbox {self.path} ({exc})") from None

    def after(self, position: int, limit: int) -> list[tuple[int, str]]:
        """The notices with an id above `position`, oldest first."""
        rows = self._db.execute(
            "SELECT id, payload FROM inbox WHERE id > ? ORDER BY id LIMIT ?", (position, limit)
        )
        return [(int(row_id), str(payload)) for row_id, payload in rows]

    def prune(self, position: int) -> None:
        """Delete the notices taken, those up to `position`."""
        try:
            with self._db:
                self._db.execute("DELETE FROM inbox WHERE id <= ?", (position,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the webhook inbox {self.path} ({exc})") from None

    def forget(self, notice: Callable[[str], bool]) -> int:
        """Delete the notices `notice` picks, leaving no copy in the file; returns how many."""
        try:
            picked = [
                (int(row_id),)
                for row_id, payload in self._db.execute("SELECT id, payload FROM inbox")
                if notice(str(payload))
            ]
            with self._db:
                self._db.executemany("DELETE FROM inbox WHERE id=?", picked)
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot clean the webhook inbox {self.path} ({exc})") from None
        return len(picked)
