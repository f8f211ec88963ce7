"""The SQLite state store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from audimeter import store as store_module
from audimeter.events import EndReason, Session, SessionEnded, SessionKeptAlive, SessionStarted
from audimeter.nowplaying import Play, PlayEnded, PlayStarted
from audimeter.sessionizer import (
    MountRecord,
    SessionClosed,
    SessionForgotten,
    SessionOpened,
    SessionRemembered,
)
from audimeter.store import MATOMO, SCHEMA_VERSION, SourceStatus, Stamped, Store, StoreError

SESSION = Session("main", "i1", "/live", "7", "10.0.0.1", "VLC", "", 100, 0, "utm_source=a&pw=x")
START = Stamped(SessionStarted(SESSION), "v1", 3)


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "a.db"
    store = Store.open(path)
    salt = store.salt()
    store.commit([SessionOpened(SESSION)], [MountRecord("main", "i1", "/live", 150)], [START])
    store.close()

    store = Store.open(path)
    assert store.salt() == salt
    assert store.load_sessions() == [SESSION]
    assert store.load_mounts() == [MountRecord("main", "i1", "/live", 150)]
    (row,) = store.journal_batch(0, 10)
    assert (row.event, row.visitor_id) == (START.event, "v1")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_end_removes_the_session_and_mounts_are_replaced(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    store.commit([SessionOpened(SESSION)], [MountRecord("main", "i1", "/live", 150)], [])
    store.commit(
        [SessionClosed(SESSION)],
        [MountRecord("main", "i1", "/other", 160)],
        [],
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


@pytest.mark.parametrize("version", [2, 3])
def test_a_state_file_of_an_earlier_schema_keeps_its_sessions_and_requests(
    tmp_path: Path, version: int
) -> None:
    """Made with that version's SQL: open sessions stay, queued requests are delivered
    before any event journaled after the upgrade, parked and refused ones are kept."""
    path = tmp_path / "a.db"
    db = sqlite3.connect(path)
    db.executescript((Path(__file__).parent / "schemas" / f"v{version}.sql").read_text())
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    db.execute(
        "INSERT INTO sessions VALUES ('main','i1','/live','7','10.0.0.1','VLC','',100,0,'',NULL)"
    )
    db.executemany(
        "INSERT INTO outbox(id, payload, created_at) VALUES (?, ?, 0)",
        [(1, "?idsite=1&n=1"), (5, "?idsite=1&n=5")],
    )
    db.execute("INSERT INTO dead_letter VALUES (3, '?idsite=1&n=3', 'HTTP 400', 0)")
    if version == 3:
        db.execute("INSERT INTO parked VALUES (7, 2, '?idsite=2&n=7', 0, 0)")
    db.commit()
    db.close()
    store = Store.open(path)
    assert store.load_sessions() == [
        Session("main", "i1", "/live", "7", "10.0.0.1", "VLC", "", 100, 0)
    ]
    store.commit([], [], [START])
    store.prepare_cursors([MATOMO], drop_others=True)
    rows, _ = store.matomo_batch(10)
    assert [row.payload for row in rows] == ["?idsite=1&n=1", "?idsite=1&n=5", None]
    assert rows[2].event == START.event
    assert rows[2].seq > (7 if version == 3 else 5)
    assert [d.row.payload for d in store.dead_letters()] == ["?idsite=1&n=3"]
    assert store.parked_sites() == ({2: 1} if version == 3 else {})
    store.close()
    version_row = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='schema_version'")
    assert version_row.fetchone() == (str(SCHEMA_VERSION),)
    Store.open(path).close()  # and opens again as it is


def test_a_state_file_of_schema_4_keeps_its_journal_and_parked_events(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = sqlite3.connect(path)
    db.executescript((Path(__file__).parent / "schemas" / "v4.sql").read_text())
    db.execute("INSERT INTO meta VALUES ('schema_version', '4')")
    db.commit()
    db.close()
    store = Store.open(path)
    store.commit([], [], [START] * 2)
    rows = store.journal_batch(0, 10)
    store.park([(rows[1], 2)])
    store.close()
    db = sqlite3.connect(path)  # back to version 4, with a parked event in its table
    db.execute("DROP TABLE titles")
    db.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    db.commit()
    db.close()
    store = Store.open(path)
    assert store.journal_batch(0, 10) == rows
    assert store.parked_sites() == {2: 1}
    assert store.release(2) == 1
    store.commit([], [], [], plays=[PlayStarted(Play("main", "/live", "T", 5))])
    assert store.load_plays() == [Play("main", "/live", "T", 5)]
    store.close()
    version_row = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='schema_version'")
    assert version_row.fetchone() == (str(SCHEMA_VERSION),)


def test_plays_are_recorded_and_the_title_on_air_is_found_by_time(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store.open(path)
    one, two = Play("main", "/live", "one", 100), Play("main", "/live", "two", 130)
    store.commit([], [], [], plays=[PlayStarted(one)])
    store.commit([], [], [], plays=[PlayEnded(one, 130), PlayStarted(two)])
    store.commit([], [], [], plays=[PlayStarted(Play("main", "/other", "three", 100))])
    store.close()
    store = Store.open(path)
    assert sorted(store.load_plays(), key=str) == [
        Play("main", "/live", "two", 130),
        Play("main", "/other", "three", 100),
    ]
    titles = [store.title_at("main", "/live", at) for at in (99, 100, 129, 130, 10**9)]
    assert titles == ["", "one", "one", "two", "two"]
    store.commit([], [], [], plays=[PlayEnded(two, 140)])
    assert [store.title_at("main", "/live", at) for at in (139, 140)] == ["two", ""]
    assert store.title_at("other", "/live", 135) == ""
    assert store.prune_history(135) == 0  # and the play that ended before is gone
    assert store.title_at("main", "/live", 120) == ""
    assert store.title_at("main", "/live", 135) == "two"
    store.close()


def test_a_history_of_schema_4_gets_players_from_its_user_agents(tmp_path: Path) -> None:
    """Made with version 4's SQL: the finished sessions stay, named by player; their country
    is unknown, as the address was never kept."""
    path = tmp_path / "a.db"
    db = sqlite3.connect(path)
    db.executescript((Path(__file__).parent / "schemas" / "v4.sql").read_text())
    db.execute("INSERT INTO meta VALUES ('schema_version', '4')")
    db.executemany(
        "INSERT INTO history(source, mount, site_id, visitor_id, started_at, ended_at, seconds,"
        " reason, user_agent, referrer, campaign) VALUES ('main', '/live', 1, ?, 0, 60, 60,"
        " 'gone', ?, '', '')",
        [("v1", "VLC/3.0.20 LibVLC/3.0.20"), ("v2", "WinampMPEG/5.66"), ("v3", "")],
    )
    db.commit()
    db.close()
    Store.open(path).close()
    rows = sqlite3.connect(path).execute(
        "SELECT visitor_id, player, country FROM history ORDER BY id"
    )
    assert rows.fetchall() == [("v1", "VLC", ""), ("v2", "Winamp", ""), ("v3", "Unknown", "")]
    Store.open(path).close()  # and opens again as it is


def test_a_state_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    Store.open(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store.open(path)


def test_every_event_kind_comes_back_from_the_journal_and_ends_fill_the_history(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "a.db")
    events = [
        START,
        Stamped(SessionKeptAlive(SESSION, 220, 100), "v1", 3),
        Stamped(SessionEnded(SESSION, 250, 220, EndReason.SOURCE_LOST), "v1", 3, "VLC", "DE"),
    ]
    store.commit([], [], events)
    assert [row.event for row in store.journal_batch(0, 10)] == [e.event for e in events]
    assert [row.seq for row in store.journal_batch(1, 10, upto=2)] == [2]
    history = sqlite3.connect(tmp_path / "a.db").execute("SELECT * FROM history").fetchall()
    assert history == [
        (1, "main", "/live", 3, "v1", 100, 250, 150, "source_lost", "VLC", "", "utm_source=a",
         "VLC", "DE")
    ]  # fmt: skip
    assert store.prune_history(251) == 1


def test_events_read_in_batches_share_their_session_and_come_back_whole(tmp_path: Path) -> None:
    """Interleaved sessions, some read again after the sessions remembered were dropped, and
    one session again after its end: each event comes back as it was journaled."""
    store = Store.open(tmp_path / "a.db")
    sessions = [
        Session("main", "i", f"/m{i % 2}", str(i), f"10.0.0.{i}", "VLC", "", 100 + i, i % 3)
        for i in range(8)
    ]
    events: list[Stamped] = []
    for s in sessions:
        events.append(Stamped(SessionStarted(s), "v", 3))
    for s in sessions:
        events.append(Stamped(SessionKeptAlive(s, 200, s.started_at), "v", 3))
    for s in reversed(sessions):
        events.append(Stamped(SessionEnded(s, 300, 200, EndReason.LEFT), "v", 3))
    events.append(Stamped(SessionStarted(sessions[0]), "v", 3))
    events.append(Stamped(SessionKeptAlive(sessions[0], 400, 100), "v", 3))
    store.commit([], [], events)
    store = Store.open(tmp_path / "a.db", shared_sessions=3)  # reads them from the file
    read = [row for after in range(0, len(events), 5) for row in store.journal_batch(after, 5)]
    assert [row.event for row in read] == [e.event for e in events]
    shared = [row.event.session for row in read if row.event is not None]
    assert shared[0] is not shared[8]  # sessions remembered were dropped between
    assert shared[-1] is shared[-2]


def test_the_daemon_s_store_keeps_no_session_of_the_events_it_read(tmp_path: Path) -> None:
    """Its outputs read one event per session every few minutes: shared, they would be held."""
    store = Store.open(tmp_path / "a.db")
    keep_alive = Stamped(SessionKeptAlive(SESSION, 200, SESSION.started_at), "v", 3)
    store.commit([], [], [Stamped(SessionStarted(SESSION), "v", 3), keep_alive])
    store = Store.open(tmp_path / "a.db")  # reads them from the file
    first, second = (row.event for row in store.journal_batch(0, 10))
    assert first is not None
    assert second is not None
    assert first.session == second.session
    assert first.session is not second.session


def test_rows_journaled_last_come_as_the_file_has_them(tmp_path: Path) -> None:
    """Handed out from memory where this connection journaled them, read from the file where
    another one journaled in between (an import beside the daemon) or a request was queued."""
    path = tmp_path / "a.db"
    store, other = Store.open(path), Store.open(path)
    sessions = [
        Session("main", "i", "/m", str(i), f"10.0.0.{i}", "VLC", "", 100 + i, 0) for i in range(4)
    ]
    starts = [Stamped(SessionStarted(s), "v", 3) for s in sessions]
    store.commit([], [], starts[:3])
    other.commit([], [], starts[3:])
    store.queue_requests(["?idsite=1&rec=1"])
    keep_alives = [SessionKeptAlive(s, 300, s.started_at) for s in sessions]
    store.commit([], [], [Stamped(event, "v", 3) for event in keep_alives])
    store.commit([], [], [Stamped(SessionEnded(sessions[0], 400, 300, EndReason.LEFT), "v", 3)])
    from_file = Store.open(path)
    last = from_file.last_seq()
    assert last == 10
    for after in range(last + 1):
        for limit in (1, 2, 3, 20):
            for upto in (None, last - 1, after + 2, after):
                expected = from_file.journal_batch(after, limit, upto)
                assert store.journal_batch(after, limit, upto) == expected, (after, limit, upto)
    assert store.journal_batch(0, 1)[0].event is starts[0].event  # from memory


def test_of_a_large_commit_only_the_last_rows_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "RECENT_ROWS", 3)
    store = Store.open(tmp_path / "a.db")
    keep_alives = [Stamped(SessionKeptAlive(SESSION, 100 + 120 * i, 100), "v1") for i in range(8)]
    store.commit([], [], keep_alives)
    assert sorted(store._recent) == [6, 7, 8]
    assert store.journal_batch(5, 10)[0].event is keep_alives[5].event  # from memory
    assert [row.event for row in store.journal_batch(0, 10)] == [k.event for k in keep_alives]


def test_rows_rolled_back_or_pruned_are_never_handed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "a.db")
    keep_alive = Stamped(SessionKeptAlive(SESSION, 200, 100), "v1", 3)

    def fail(*_: object) -> None:
        raise RuntimeError("after the journal, before the commit")

    monkeypatch.setattr(store, "_plays", fail)
    with pytest.raises(RuntimeError):
        store.commit([], [], [START, keep_alive])
    monkeypatch.undo()
    assert store.journal_batch(0, 10) == []
    end = Stamped(SessionEnded(SESSION, 300, 200, EndReason.LEFT), "v1", 3)
    store.commit([], [], [keep_alive, end])  # the seqs of the rolled-back rows again
    assert [row.event for row in store.journal_batch(0, 10)] == [keep_alive.event, end.event]
    assert store.prune_keepalives(0, 2) == 1
    assert [row.event for row in store.journal_batch(0, 10)] == [end.event]


def test_parked_events_and_dead_letters_keep_the_event(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store.open(path)
    store.commit([], [], [START] * 4)
    rows = store.journal_batch(0, 10)
    store.park([(rows[1], 2), (rows[2], 2)])
    store.dead_letter([rows[3]], "HTTP 400: bad")
    store.prepare_cursors([MATOMO], drop_others=True)
    store.advance(MATOMO, 4)
    assert store.parked_sites() == {2: 2}
    assert store.matomo_pending() == 2  # parked events are not delivered yet
    (dead,) = store.dead_letters()
    assert (dead.row, dead.reason) == (rows[3], "HTTP 400: bad")
    store.close()
    store = Store.open(path)  # durable
    assert store.matomo_batch(10) == ([], False)
    assert store.release(2) == 2
    assert store.matomo_batch(10) == (rows[1:3], True)
    store.unpark([2, 3])
    assert store.matomo_pending() == 0
    store.close()


def test_forget_deletes_by_address_everywhere(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    other = Session("main", "i1", "/live", "8", "198.51.100.7", "VLC", "", 100, 0)
    end = SessionEnded(SESSION, 200, 100, EndReason.LEFT)
    store.commit([SessionOpened(SESSION)], [], [START, Stamped(end, "v1", 3)])
    store.commit([], [], [Stamped(SessionStarted(other), "v2", 3)])
    rows = store.journal_batch(0, 10)
    store.park([(rows[0], 2)])
    store.dead_letter([rows[1]], "refused")
    store.queue_requests(["?idsite=2&cid=v3&cip=10.0.0.1", "?idsite=2&cip=198.51.100.8"])
    forgotten = store.forget(address=lambda ip: ip == "10.0.0.1", notice=lambda _: False)
    assert (forgotten.sessions, forgotten.events, forgotten.dead_letters) == (1, 4, 1)
    assert forgotten.history == 1
    assert [row.visitor_id or row.payload for row in store.journal_batch(0, 10)] == [
        "v2",
        "?idsite=2&cip=198.51.100.8",
    ]
    assert store.parked_sites() == {}
    store.close()


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


def test_an_import_is_queued_in_chunks_and_an_interrupted_one_goes_on_where_it_stopped(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "a.db")
    requests = [Stamped(SessionKeptAlive(SESSION, 100 + i, 100), f"v{i}") for i in range(10)]
    assert store.import_progress("k") == 0
    # the third chunk fails (an event SQLite refuses): two chunks of four stay queued, as a
    # crash between two transactions would leave them
    bad = Stamped(SessionKeptAlive(SESSION, 110, 100), None)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        store.commit_import("k", "main", "log", 3, [*requests[:8], bad], chunk=4)
    assert store.import_progress("k") == 8
    assert store.journal_count(0, 100) == 8
    store.commit_import("k", "main", "log", 3, requests[8:], done=8, chunk=4)
    assert store.import_progress("k") is None
    assert [row.visitor_id for row in store.journal_batch(0, 100)] == [
        r.visitor_id for r in requests
    ]
    assert store.last_seq() == 10


def test_two_imports_of_one_file_at_once_queue_it_once(tmp_path: Path) -> None:
    first, second = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "a.db")
    requests = [START] * 6
    assert first.import_progress("k") == second.import_progress("k") == 0
    first.commit_import("k", "main", "log", 3, requests, chunk=4)
    with pytest.raises(StoreError, match="another `audimeter import` of the same content"):
        second.commit_import("k", "main", "log", 3, requests, chunk=4)
    assert second.journal_count(0, 100) == 6


def test_one_sender_at_a_time(tmp_path: Path) -> None:
    run, imports = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "a.db")
    assert run.send_lock.try_acquire()
    assert not imports.send_lock.try_acquire()
    run.send_lock.release()
    assert imports.send_lock.try_acquire()
    imports.close()  # closing drops the lock, as a process's death does
    assert run.send_lock.try_acquire()
    assert (tmp_path / "a.db.lock").exists()


def test_a_version_4_file_gains_the_source_status_and_keeps_its_events(tmp_path: Path) -> None:
    """Version 5 only adds `source_status`: journaled, parked and refused events stay as they
    are (not taken for an earlier schema's requests)."""
    path = tmp_path / "a.db"
    store = Store.open(path)
    store.prepare_cursors([MATOMO], drop_others=True)
    store.commit([], [], [START, START])
    first, second = store.journal_batch(0, 10)
    store.dead_letter([first], "HTTP 400")
    store.park([(second, 3)])
    store.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE source_status")
    db.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    db.commit()
    db.close()
    store = Store.open(path)
    assert [d.row for d in store.dead_letters()] == [first]
    assert store.parked_sites() == {3: 1}
    store.record_run(10.5, [SourceStatus("old", "icecast", "Icecast 2.5", 60, 9, None)])
    store.record_run(10.5, [SourceStatus("main", "icecast", "", 60, None, None)])
    store.record_beat(20.25)
    store.record_source(SourceStatus("main", "icecast", "Icecast 2.5", 60, 19, None))
    store.record_source(SourceStatus("main", "icecast", "Icecast 2.5", 60, 19, "down"))
    store.record_beat(None)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT * FROM source_status").fetchall() == [
        ("main", "icecast", "Icecast 2.5", 60.0, 19.0, "down")
    ]
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert (meta["schema_version"], meta["run_started_at"]) == (str(SCHEMA_VERSION), "10.5")
    assert "loop_beat" not in meta
