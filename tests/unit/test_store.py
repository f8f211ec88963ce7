"""The SQLite state store."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from audimeter.events import Session
from audimeter.sessionizer import (
    MountRecord,
    SessionClosed,
    SessionForgotten,
    SessionOpened,
    SessionRemembered,
)
from audimeter.store import SCHEMA_VERSION, Store, StoreError

SESSION = Session("main", "i1", "/live", "7", "10.0.0.1", "VLC", "", 100, 0)


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "a.db"
    store = Store.open(path)
    salt = store.salt()
    store.commit([SessionOpened(SESSION)], [MountRecord("main", "i1", "/live", 150)], ["?a=1"])
    store.close()

    store = Store.open(path)
    assert store.salt() == salt
    assert store.load_sessions() == [SESSION]
    assert store.load_mounts() == [MountRecord("main", "i1", "/live", 150)]
    assert [row.payload for row in store.outbox_batch(10)] == ["?a=1"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_end_removes_the_session_and_mounts_are_replaced(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    store.commit([SessionOpened(SESSION)], [MountRecord("main", "i1", "/live", 150)], [])
    store.commit(
        [SessionClosed(SESSION)],
        [MountRecord("main", "i1", "/other", 160)],
        ["?b=2"],
    )
    assert store.load_sessions() == []
    assert store.load_mounts() == [MountRecord("main", "i1", "/other", 160)]


def test_ended_sessions_and_instances_are_kept_until_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store.open(path)
    remembered = SessionRemembered(SESSION, end=300, seen=290, exact=True)
    store.commit(
        [SessionOpened(SESSION), SessionClosed(SESSION), remembered],
        [],
        [],
        instances={"main": "i1", "other": "started:5"},
    )
    store.close()
    store = Store.open(path)
    assert store.load_sessions() == []
    assert store.load_remembered() == [remembered]
    assert store.load_instances() == {"main": "i1", "other": "started:5"}
    store.commit([SessionForgotten(SESSION)], [], [], instances={"main": "i2"})
    assert store.load_remembered() == []
    assert store.load_instances() == {"main": "i2"}
    store.commit([], [], [])  # without `instances`: the stored ones stay
    assert store.load_instances() == {"main": "i2"}


def test_a_state_file_of_schema_1_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    Store.open(path).close()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE ended; DROP TABLE instances;"
        "UPDATE meta SET value='1' WHERE key='schema_version';"
    )
    db.close()
    store = Store.open(path)
    assert store.load_remembered() == []
    assert store.load_instances() == {}
    store.close()
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='schema_version'")
    assert version.fetchone() == (str(SCHEMA_VERSION),)


def test_a_state_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    Store.open(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store.open(path)


def test_outbox_acknowledge_and_dead_letter(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    store.commit([], [], [f"?n={n}" for n in range(5)])
    rows = store.outbox_batch(3)
    assert [r.payload for r in rows] == ["?n=0", "?n=1", "?n=2"]
    store.acknowledge([rows[0].id, rows[2].id])
    store.dead_letter([rows[1]], "HTTP 400: bad")
    assert [r.payload for r in store.outbox_batch(10)] == ["?n=3", "?n=4"]
    assert store.outbox_size() == 2
    (dead,) = store.dead_letters()
    assert (dead.payload, dead.reason) == ("?n=1", "HTTP 400: bad")


def test_parked_requests_wait_outside_the_outbox_and_come_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store.open(path)
    store.commit([], [], [f"?idsite={1 + n % 2}&n={n}" for n in range(6)])
    rows = store.outbox_batch(4)
    store.park([(row, 2) for row in rows if "idsite=2" in row.payload])
    assert [r.payload for r in store.outbox_batch(10)] == [
        "?idsite=1&n=0",
        "?idsite=1&n=2",
        "?idsite=1&n=4",
        "?idsite=2&n=5",
    ]
    assert store.parked_sites() == {2: 2}
    # Parked requests count as not yet delivered, for the outbox limit too.
    assert store.outbox_size() == 6
    assert store.outbox_span() >= 6
    store.acknowledge([r.id for r in store.outbox_batch(10) if "idsite=1" in r.payload])
    store.close()

    store = Store.open(path)  # parked requests are durable
    assert store.parked_sites() == {2: 2}
    assert store.release(2) == 2
    assert store.parked_sites() == {}
    # Back in the outbox ahead of the request queued for site 2 after them.
    assert [r.payload for r in store.outbox_batch(10)] == [
        "?idsite=2&n=1",
        "?idsite=2&n=3",
        "?idsite=2&n=5",
    ]
    store.commit([], [], ["?idsite=2&n=6"])
    assert store.outbox_batch(10)[-1].payload == "?idsite=2&n=6"  # ids are never reused


def test_forget_deletes_parked_requests_too(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store.open(path)
    store.commit([], [], ["?idsite=2&cip=203.0.113.9", "?idsite=2&cip=198.51.100.7"])
    store.park([(row, 2) for row in store.outbox_batch(10)])
    store.close()
    store = Store.open_exclusive(path)
    forgotten = store.forget(
        session_ip=lambda ip: False,
        request=lambda payload: "203.0.113.9" in payload,
        notice=lambda payload: False,
    )
    assert forgotten.outbox == 1
    assert store.parked_sites() == {2: 1}
    store.close()


def test_a_state_file_of_schema_2_gets_the_parked_table(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    Store.open(path).close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE parked; UPDATE meta SET value='2' WHERE key='schema_version';")
    db.close()
    store = Store.open(path)
    assert store.parked_sites() == {}
    store.close()
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='schema_version'")
    assert version.fetchone() == (str(SCHEMA_VERSION),)


def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    garbage = b"this is not a database" * 100
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match="left untouched"):
        Store.open(path)
    assert path.read_bytes() == garbage


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot be created"):
        Store.open(blocker / "a.db")


def test_inbox_writes_alone_wait_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook notice is acknowledged once `append_inbox` returns: its commit runs with
    synchronous=FULL (survives a power loss); other commits keep NORMAL."""
    connections: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection: sqlite3.Connection = connect(*args, **kwargs)
        connections.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", recording_connect)
    store = Store.open(tmp_path / "a.db")
    (connection,) = connections
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    store.append_inbox('{"type": "joined"}')
    inbox = statements[:]
    statements.clear()
    store.commit([SessionOpened(SESSION)], [], ["?a=1"])
    committed = statements[:]
    level = connection.execute("PRAGMA synchronous").fetchone()
    store.close()
    assert [s.split(" (")[0] for s in inbox] == [
        "PRAGMA synchronous=FULL",
        "BEGIN IMMEDIATE",
        "INSERT INTO inbox(payload) VALUES",
        "COMMIT",
        "PRAGMA synchronous=NORMAL",
    ]
    assert not [s for s in committed if "synchronous" in s]
    assert level == (1,)  # NORMAL again for everything else


def test_an_import_is_queued_in_chunks_and_an_interrupted_one_goes_on_where_it_stopped(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "a.db")
    requests = [f"?n={i}" for i in range(10)]
    assert store.import_progress("k") == 0
    # the third chunk fails (a payload SQLite refuses): two chunks of four stay queued, as a
    # crash between two transactions would leave them
    broken: list[str] = [*requests[:8], None]  # type: ignore[list-item]
    with pytest.raises(StoreError):
        store.commit_import("k", "main", "log", 3, broken, chunk=4)
    assert store.import_progress("k") == 8
    assert store.outbox_count(1, 100) == 8
    store.commit_import("k", "main", "log", 3, requests[8:], done=8, chunk=4)
    assert store.import_progress("k") is None
    assert [row.payload for row in store.outbox_batch(100)] == requests
    assert store.outbox_last_id() == 10
    assert [row.id for row in store.outbox_batch(100, upto=3)] == [1, 2, 3]


def test_two_imports_of_one_file_at_once_queue_it_once(tmp_path: Path) -> None:
    first, second = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "a.db")
    requests = [f"?n={i}" for i in range(6)]
    assert first.import_progress("k") == second.import_progress("k") == 0
    first.commit_import("k", "main", "log", 3, requests, chunk=4)
    with pytest.raises(StoreError, match="another `audimeter import` of the same content"):
        second.commit_import("k", "main", "log", 3, requests, chunk=4)
    assert second.outbox_count(1, 100) == 6


def test_one_sender_at_a_time(tmp_path: Path) -> None:
    run, imports = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "a.db")
    assert run.send_lock.try_acquire()
    assert not imports.send_lock.try_acquire()
    run.send_lock.release()
    assert imports.send_lock.try_acquire()
    imports.close()  # closing drops the lock, as a process's death does
    assert run.send_lock.try_acquire()
    assert (tmp_path / "a.db.lock").exists()
