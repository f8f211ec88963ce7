"""`audimeter status`'s snapshot of a state file written through the Store: today's sessions and
hours clipped at local midnight, listeners now, joins, leaves and the last hour, the backlog."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from audimeter.config import Config
from audimeter.events import EndReason, Session, SessionEnded, SessionStarted
from audimeter.screen import ago, sparkline, status_screen
from audimeter.sessionizer import SessionGone, SessionOpened
from audimeter.status import StateReader, StatusError, read_snapshot, to_json
from audimeter.store import MATOMO, SourceStatus, Stamped, Store

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> int:
    """A Berlin wall-clock time on 9 or 10 March 2026 ("09 23:40:00")."""
    return int(
        datetime.strptime(f"2026-03-{text}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=BERLIN).timestamp()
    )


NOW = at("10 00:30:00")


def session(client_id: str, started: int, mount: str = "/live") -> Session:
    return Session("main", "i1", mount, client_id, "10.0.0.1", "VLC", "", started, 0)


def ended(client_id: str, started: int, end: int, mount: str = "/live") -> Stamped:
    s = session(client_id, started, mount)
    return Stamped(SessionEnded(s, end, end, EndReason.LEFT), f"v{client_id}")


def config(path: Path, **health: float) -> Config:
    return Config.model_validate(
        {
            "state": {"path": str(path)},
            "reports": {"timezone": "Europe/Berlin"},
            "health": health,
            "sources": [
                {"name": "main", "kind": "icecast", "url": "http://127.0.0.1:1", "password": "p"},
                {"name": "new", "kind": "shoutcast2", "url": "http://127.0.0.1:2", "password": "p"},
            ],
        }
    )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    store = Store.open(path)
    store.prepare_cursors([MATOMO, "jsonl"], drop_others=True)
    history = [
        ended("a", at("09 23:00:00"), at("10 00:10:00")),  # 600 s today
        ended("b", at("09 23:45:00"), at("09 23:50:00")),  # yesterday only
        ended("c", at("10 00:20:00"), at("10 00:29:30")),  # 570 s, left in the last minute
        ended("t", at("10 00:05:00"), at("10 00:06:00"), "/talk"),
    ]
    store.commit([], [], history)
    store.advance("jsonl", store.last_seq())
    d, e, f = (
        session("d", at("09 23:40:00")),  # 1800 s today, listening
        session("e", at("10 00:29:40")),  # joined in the last minute
        session("f", at("10 00:00:00")),  # gone at 00:29:50: 1790 s, left
    )
    store.commit([SessionOpened(s) for s in (d, e, f)], [], [Stamped(SessionStarted(e), "ve")])
    store.commit([SessionGone(f, at("10 00:29:50"))], [], [])
    (first, *_) = store.journal_batch(0, 1)
    store.dead_letter([first], "HTTP 400: invalid")
    store.record_run(NOW - 600, [SourceStatus("main", "icecast", "", 120, None, None)])
    store.record_source(SourceStatus("main", "icecast", "Icecast 2.4.4", 120, NOW - 4, None))
    store.record_beat(NOW - 3)
    store.close()
    return path


def test_today_is_clipped_at_local_midnight_and_open_sessions_count(state: Path) -> None:
    snapshot = read_snapshot(state, config(state), NOW)
    live, talk = snapshot.mounts
    assert (live.mount, live.listeners, live.sessions_today) == ("/live", 2, 5)
    assert live.seconds_today == 600 + 570 + 1800 + 20 + 1790
    assert (talk.mount, talk.listeners, talk.sessions_today, talk.seconds_today) == (
        "/talk",
        0,
        1,
        60,
    )


def test_backlog_and_sources(state: Path) -> None:
    snapshot = read_snapshot(state, config(state), NOW)
    jsonl, matomo = snapshot.outputs  # by name
    # Matomo has every event (four ends and a start); the oldest is a's end at 00:10.
    assert (matomo.name, matomo.pending, matomo.oldest_pending) == ("matomo", 5, at("10 00:10:00"))
    assert matomo.dead_letters == 1
    assert (jsonl.name, jsonl.pending, jsonl.oldest_pending) == ("jsonl", 1, at("10 00:29:40"))
    main, new = snapshot.sources
    assert (main.software, main.last_ok, main.problem) == ("Icecast 2.4.4", NOW - 4, None)
    # Configured after the run started: never polled, counted from the run's start.
    assert (new.kind, new.software, new.last_ok) == ("shoutcast2", "", None)
    assert snapshot.verdict.problems == (
        "source new: no good poll for 600 s (outage grace 120 s)",
        "output matomo: oldest pending event is 1200 s old (limit 300 s)",
    )
    relaxed = read_snapshot(state, config(state, delivery_lag=1500), NOW)
    assert relaxed.verdict.problems == snapshot.verdict.problems[:1]


def test_json_keys(state: Path) -> None:
    document = json.loads(to_json(read_snapshot(state, config(state), NOW), state, "Europe/Berlin"))
    assert set(document) == {
        *("healthy", "problems", "now", "state", "timezone"),
        *("run", "sources", "mounts", "outputs"),
    }
    assert document["healthy"] is False
    assert document["run"] == {
        "running": True,
        "started_at": NOW - 600,
        "loop_beat": NOW - 3,
        "loop_beat_age": 3,
    }
    assert document["mounts"][0] == {
        "source": "main",
        "mount": "/live",
        "listeners": 2,
        "sessions_today": 5,
        "listening_hours_today": 1.33,
    }
    assert document["sources"][0]["last_ok_age"] == 4
    assert document["outputs"][0] == {
        "name": "jsonl",
        "pending": 1,
        "oldest_pending": at("10 00:29:40"),
        "oldest_pending_age": 20,
        "dead_letters": 0,
    }


def test_activity_of_the_last_minute_and_hour(state: Path) -> None:
    reader = StateReader(state)
    try:
        live, talk = reader.snapshot(config(state), NOW, activity=True).mounts
    finally:
        reader.close()
    assert (live.joins, live.leaves) == (1, 2)  # e joined; c ended, f went
    assert len(live.spark) == 60
    minute = {t: live.spark[59 - (NOW - at(f"10 {t}")) // 60] for t in ("00:15:00", "00:25:00")}
    assert minute == {"00:15:00": 2, "00:25:00": 3}  # d, f; then c too
    assert live.spark[-2:] == [3, 2]  # c, d, f at 00:29 (c ended at 00:29:30); now d and e
    assert (talk.joins, talk.leaves, max(talk.spark)) == (0, 0, 1)
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█"
    assert sparkline([0, 0]) == "▁▁"
    assert [ago(s) for s in (4, 125, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == [
        "4 s",
        "2 min",
        "3 h 5 min",
        "2 d 4 h",
    ]


def test_a_stopped_run_is_not_running_and_its_sources_are_not_blamed(state: Path) -> None:
    store = Store.open(state)
    store.record_beat(None)
    store.close()
    snapshot = read_snapshot(state, config(state, delivery_lag=3600), NOW)
    assert snapshot.verdict.problems == ("main loop: not running",)


def test_missing_or_foreign_files_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StatusError, match="there is no state file"):
        read_snapshot(tmp_path / "none.db", config(tmp_path / "none.db"), NOW)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StatusError, match="is it an audimeter state file"):
        read_snapshot(junk, config(junk), NOW)


@pytest.mark.parametrize(
    ("width", "heading", "minutes"), [(140, "last hour", 60), (80, "last 10 min", 10)]
)
def test_top_cuts_the_sparkline_to_the_terminal(
    state: Path, width: int, heading: str, minutes: int
) -> None:
    reader = StateReader(state)
    try:
        snapshot = reader.snapshot(config(state), NOW, activity=True)
    finally:
        reader.close()
    console = Console(width=width, record=True)
    console.print(status_screen(snapshot, BERLIN, live_width=width))
    text = console.export_text()
    assert heading in text
    assert "…" not in text  # nothing cut short
    (live,) = [line.split() for line in text.splitlines() if "/live" in line]
    assert live[:7] == ["main", "/live", "2", "5", "1.3", "1", "2"]
    assert live[7] == sparkline(snapshot.mounts[0].spark)[-minutes:]


def test_top_reads_the_sessions_finished_since_its_last_snapshot(state: Path) -> None:
    reader = StateReader(state)
    try:
        first = reader.snapshot(config(state), NOW, activity=True).mounts[0]
        store = Store.open(state)
        store.commit([], [], [ended("g", at("10 00:29:00"), at("10 00:30:05"))])
        store.close()
        later = NOW + 10  # the rows added since are read, not the day again
        second = reader.snapshot(config(state), later, activity=True).mounts[0]
        again = reader.snapshot(config(state), later + 3600, activity=True).mounts[0]
    finally:
        reader.close()
    assert (second.sessions_today, second.seconds_today) == (6, first.seconds_today + 65 + 10 + 10)
    assert (second.joins, second.leaves) == (1, 3)  # e joined; c, f and now g left
    assert second.spark[-2:] == [4, 2]  # c, d, f, g at 00:29:10; d, e at 00:30:10
    assert max(again.spark[:-1]) == 2  # an hour on: only d and e, who are still listening
