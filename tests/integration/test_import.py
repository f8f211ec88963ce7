"""`audimeter import` run as an operator runs it, against a recording Matomo."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from rich.console import Console

from audimeter.config import Config, parse_config
from audimeter.events import Event, Session, SessionEnded, SessionKeptAlive, SessionStarted
from audimeter.importer import (
    Counts,
    Listen,
    deliver,
    dry_run_lines,
    plan_lines,
    read_texts,
)
from audimeter.matomo.mapping import SaltSource, mapper_for, visitor_id
from audimeter.matomo.sink import Backoff
from audimeter.sessionizer import Sessionizer
from audimeter.sources.accesslog import text_lines
from audimeter.store import Stamped, Store
from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.fixtures import ICECAST_25, live_observations
from tests.support.geoip import write_countries
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomo import DEFAULT_TOKEN, RecordingMatomo, Visit

VISIT_LENGTH = 1800
KEEPALIVE = 120
STREAM = "http://radio.example.org:8000"
VLC = "VLC/3.0.20 LibVLC/3.0.20"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
EXO = "ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2"
# Three days ago at 10:00 UTC: old enough to need token_auth, far from midnight.
BASE = (int(time.time()) // 86400 - 3) * 86400 + 10 * 3600


@dataclass(frozen=True)
class Played:
    """A listener's connection as the test writes it into the log."""

    ip: str
    agent: str
    start: int
    duration: int
    mount: str = "/live.mp3"
    referrer: str = "-"

    @property
    def end(self) -> int:
        return self.start + self.duration


def clf(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def log_line(
    ip: str,
    end: int,
    path: str,
    duration: int,
    agent: str,
    *,
    status: int = 200,
    method: str = "GET",
    referrer: str = "-",
    sent: int | None = None,
) -> str:
    size = duration * 16_000 + 4_000 if sent is None else sent
    return (
        f'{ip} - - [{clf(end)}] "{method} {path} HTTP/1.1" {status} {size} "{referrer}" '
        f'"{agent}" {duration}'
    )


LISTENERS = [
    Played("198.51.100.1", VLC, BASE, 3600),  # an hour: keep-alives keep the visit whole
    Played("198.51.100.2", FIREFOX, BASE + 60, 90, referrer="https://radio.example.org/"),
    # one address, one player, at the same time: two visitors
    Played("198.51.100.7", EXO, BASE + 100, 600),
    Played("198.51.100.7", EXO, BASE + 200, 300),
    # the same one again once the first has left: the first visitor returns
    Played("198.51.100.7", EXO, BASE + 700, 300),
    Played("2001:db8::5", VLC, BASE + 1000, 45, mount="/talk.mp3"),
]
OTHERS = [
    log_line("127.0.0.1", BASE + 5, "/admin/listclients", 0, "audimeter/0.1.0"),
    log_line("127.0.0.1", BASE + 15, "/admin/stats", 0, "audimeter/0.1.0"),
    log_line("203.0.113.4", BASE + 20, "/status-json.xsl", 0, FIREFOX),
    log_line("203.0.113.4", BASE + 21, "/live.mp3", 0, VLC, status=401, sent=328),
    log_line("10.0.0.5", BASE + 4000, "/live.mp3", 4000, "Liquidsoap/2.2.2", method="PUT"),
]
FILTERED = [log_line("203.0.113.9", BASE + 500, "/live.mp3", 50, "curl/8.5.0")]
BAD = ["this is not a log line", log_line("198.51.100.1", BASE + 30, "/live.mp3", 5, VLC)[:50]]


def write_log(path: Path, listeners: list[Played], *, compress: bool = False) -> Path:
    """The lines in the order Icecast writes them (at disconnect), bad ones in between."""
    timed = [
        (p.end, log_line(p.ip, p.end, p.mount, p.duration, p.agent, referrer=p.referrer))
        for p in listeners
    ]
    timed += [(BASE + 500, line) for line in FILTERED] + [
        (BASE + i, line) for i, line in enumerate(OTHERS)
    ]
    lines = [line for _, line in sorted(timed, key=lambda pair: pair[0])]
    lines[2:2] = BAD
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_config(tmp_path: Path, matomo: RecordingMatomo | None, extra: str = "") -> Path:
    text = f"""
[state]
path = "{tmp_path / "state.db"}"

[[sources]]
name = "main"
kind = "icecast"
url = "{STREAM}"
password = "hackme"
sites = {{ "/talk.mp3" = 2 }}
"""
    if matomo is not None:
        text += f"""
[matomo]
url = "{matomo.url}"
site_id = 1
token_auth = "{DEFAULT_TOKEN}"
keepalive_interval = {KEEPALIVE}
visit_length = {VISIT_LENGTH}
batch_size = 7
import_batch_size = 9
"""
    path = tmp_path / "audimeter.toml"
    path.write_text(text + extra)
    path.chmod(0o600)  # it holds token_auth: readable by the owner only, or audimeter warns
    return path


def audimeter_import(config: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audimeter", "import", "--config", str(config), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def visit_of(visits: list[Visit], played: Played) -> Visit:
    found = [v for v in visits if v.ip == played.ip and v.first_action == played.start]
    assert len(found) == 1, (played, visits)
    return found[0]


@pytest.fixture
def matomo() -> Iterator[RecordingMatomo]:
    with RecordingMatomo(site_ids={1, 2}) as server:
        yield server


def test_sessions_arrive_with_their_true_times(tmp_path: Path, matomo: RecordingMatomo) -> None:
    config = write_config(tmp_path, matomo)
    log = write_log(tmp_path / "access.log", LISTENERS)

    result = audimeter_import(config, "--source", "main", log)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = len(LISTENERS) + len(OTHERS) + len(FILTERED) + len(BAD)
    assert f"{log}: {lines} lines, 6 listener sessions, 1 filtered, 0 too short, 2 bad, " in (
        result.stdout
    )
    assert f"{len(OTHERS)} not listeners" in result.stdout
    assert all(batch.status == 200 and batch.invalid == 0 for batch in matomo.batches)
    assert all(batch.token_valid for batch in matomo.batches)
    # The import's batches are of matomo.import_batch_size, not of batch_size (7).
    assert max(len(batch.requests) for batch in matomo.batches) == 9

    model = matomo.model(VISIT_LENGTH)
    visits = model.visits()
    assert len(visits) == len(LISTENERS)
    for played in LISTENERS:
        visit = visit_of(visits, played)
        start = visit.actions[0]
        assert start["new_visit"] == "1"
        assert int(start["cdt"]) == played.end - played.duration
        assert visit.total_time == played.duration  # what Matomo shows as the visit's length
        assert not visit.out_of_order
        assert visit.user_agent == played.agent
        assert visit.entry_url == STREAM + played.mount
        assert visit.site_id == ("2" if played.mount == "/talk.mp3" else "1")
        events = visit.actions[1:]
        assert events[-1]["e_a"] == "end"
        assert sum(int(e["e_v"]) for e in events) == played.duration
    assert visit_of(visits, LISTENERS[1]).actions[0]["urlref"] == "https://radio.example.org/"
    hour = visit_of(visits, LISTENERS[0])
    assert len(hour.actions) > 2  # kept whole by keep-alives within visit_length
    # look-alikes at the same time are two visitors; the first one comes back later
    first, second, again = (visit_of(visits, p).visitor_id for p in LISTENERS[2:5])
    assert first != second
    assert again == first
    assert not model.dropped_pings

    # The same file again, then a gzipped copy of it: recognised, nothing sent.
    posts = len(matomo.batches)
    again_result = audimeter_import(config, "--source", "main", log)
    assert again_result.returncode == 0, again_result.stderr
    assert "already imported" in again_result.stdout
    gz = tmp_path / "access.log.1.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    gz_result = audimeter_import(config, "--source", "main", gz)
    assert gz_result.returncode == 0, gz_result.stderr
    assert f"{gz}: already imported" in gz_result.stdout
    assert len(matomo.batches) == posts


def test_gzipped_log_and_several_files(tmp_path: Path, matomo: RecordingMatomo) -> None:
    config = write_config(tmp_path, matomo)
    older = write_log(tmp_path / "access.log.2.gz", LISTENERS[:2], compress=True)
    newer = write_log(tmp_path / "access.log.1", LISTENERS[2:])
    result = audimeter_import(config, "--source", "main", newer, older)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 listener sessions" in result.stdout
    assert "4 listener sessions" in result.stdout
    visits = matomo.model(VISIT_LENGTH).visits()
    assert len(visits) == len(LISTENERS)
    for played in LISTENERS:
        assert visit_of(visits, played).total_time == played.duration


def test_dry_run_sends_and_stores_nothing(tmp_path: Path, matomo: RecordingMatomo) -> None:
    config = write_config(tmp_path, matomo)
    log = write_log(tmp_path / "access.log", LISTENERS[:2])
    result = audimeter_import(config, "--source", "main", "--dry-run", log)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" ") for line in result.stdout.splitlines()[:-1]]
    # An hour with a keep-alive every 1680 s (14 intervals, the last visit_length - 1 s or
    # less), then 90 s: a pageview and an end only.
    assert [(r[0], r[1], r[2], r[3], r[4], r[6], r[7]) for r in rows] == [
        (iso(BASE), "3600", "s", "5", "requests", "/live.mp3", "198.51.100.1"),
        (iso(BASE + 60), "90", "s", "2", "requests", "/live.mp3", "198.51.100.2"),
    ]
    assert all(len(r) == 8 and len(r[5]) == 16 for r in rows)
    assert result.stdout.splitlines()[-1].endswith(
        "10 lines, 2 listener sessions, 1 filtered, 0 too short, 2 bad, 5 not listeners; "
        "7 requests (dry run)"
    )
    assert matomo.batches == []
    assert not (tmp_path / "state.db").exists()

    # not remembered: the real import afterwards sends it
    result = audimeter_import(config, "--source", "main", log)
    assert result.returncode == 0, result.stderr
    assert len(matomo.requests) == 7


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_configuration_errors_are_one_line(tmp_path: Path) -> None:
    log = write_log(tmp_path / "access.log", LISTENERS)
    config = write_config(tmp_path, None)

    result = audimeter_import(config, "--source", "nope", "--dry-run", log)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "'nope'" in result.stderr
    assert "sources: main" in result.stderr
    assert not (tmp_path / "state.db").exists()

    missing = audimeter_import(config, "--source", "main", tmp_path / "missing.log")
    assert missing.returncode == 2


def test_unreadable_file_fails_the_run(tmp_path: Path, matomo: RecordingMatomo) -> None:
    config = write_config(tmp_path, matomo)
    broken = tmp_path / "broken.log.gz"
    broken.write_bytes(gzip.compress(b"x" * 10_000)[:40])
    good = write_log(tmp_path / "access.log", LISTENERS[:1])
    result = audimeter_import(config, "--source", "main", broken, good)
    assert result.returncode == 1
    assert f"{broken}: cannot read it" in result.stderr
    assert "1 listener sessions" in result.stdout
    assert len(matomo.model(VISIT_LENGTH).visits()) == 1


# -- the parts, in process --------------------------------------------------------------------


def config_for(matomo: RecordingMatomo, tmp_path: Path) -> Config:
    return parse_config(
        {
            "state": {"path": str(tmp_path / "state.db")},
            "matomo": {
                "url": matomo.url,
                "site_id": 1,
                "token_auth": DEFAULT_TOKEN,
                "batch_size": 5,
                "import_batch_size": 5,
            },
            "sources": [{"name": "main", "kind": "icecast", "url": STREAM, "password": "x"}],
        }
    )


def test_encoder_matches_the_mapper(tmp_path: Path, matomo: RecordingMatomo) -> None:
    config = config_for(matomo, tmp_path)
    assert config.matomo is not None
    log = write_log(tmp_path / "access.log", LISTENERS)
    events = list(
        plan_lines(
            read_lines(log),
            config=config,
            source=config.sources[0],
            key="k" * 64,
            counts=Counts(),
        )
    )
    kinds = {type(e) for e in events}
    assert kinds == {SessionStarted, SessionKeptAlive, SessionEnded}
    mapper = mapper_for(config, config.matomo, "salt")
    assert [mapper.query_string(e) for e in events] == [
        "?" + urlencode(mapper.params(e)) for e in events
    ]


@pytest.mark.parametrize("salt", ["salt", lambda at: f"salt of day {at // 86400}"])
def test_dry_run_lines_are_the_sessions_told_one_by_one(salt: str | SaltSource) -> None:
    """The dry run's remembered visitor ids and times give what each session tells alone,
    with the number of its requests."""
    connections = [  # (end, seconds, address, player): returning, look-alikes, 0 s, days
        (100, 30, "192.0.2.1", VLC),
        (160, 100, "192.0.2.1", VLC),
        (170, 0, "192.0.2.1", VLC),
        (170, 0, "192.0.2.1", VLC),
        (4000, 3900, "2001:db8::1", FIREFOX),
        (86_400 * 2 + 59, 86_400 * 2, "192.0.2.1", VLC),
        (86_400 * 3, 61, "192.0.2.1", VLC),
    ]
    lines = [
        log_line(ip, BASE + end, "/live.mp3", seconds, agent, sent=4096)
        for end, seconds, ip, agent in connections
    ]
    config = parse_config(
        {
            "state": {"path": "/nonexistent/state.db"},
            "matomo": {"url": "http://matomo.invalid/", "site_id": 1, "token_auth": "x" * 32},
            "sources": [
                {"name": "main", "kind": "icecast", "url": "http://radio.invalid", "password": "p"}
            ],
        }
    )
    events = list(
        plan_lines(lines, config=config, source=config.sources[0], key="k" * 64, counts=Counts())
    )
    sessions: list[tuple[Session, int, int]] = []
    for event in events:
        if isinstance(event, SessionStarted):
            sessions.append((event.session, 0, 1))
        else:
            session, _end, requests = sessions.pop()
            sessions.append((session, event.at, requests + 1))
            assert session is event.session  # a session's events come together
    assert len(sessions) == len(connections)
    line = dry_run_lines(salt)
    for session, end, requests in sessions * 2:  # the second time round, from what was kept
        told = (
            f"{iso(session.started_at)} {end - session.started_at} s {requests} requests "
            f"{visitor_id(salt, session)} {session.mount} {session.ip}\n"
        )
        s = session
        listen = Listen(s.started_at, end, 1, s.mount, s.ip, s.user_agent, s.referrer)
        assert line((listen, s.slot, requests)) == told


def test_slots(tmp_path: Path, matomo: RecordingMatomo) -> None:
    config = config_for(matomo, tmp_path)
    connections = [  # (start, end, address, player), in the order of the log's lines
        (0, 100, "192.0.2.1", VLC),
        (50, 150, "192.0.2.1", VLC),  # overlaps 1
        (100, 200, "192.0.2.1", VLC),  # starts as 1 ends: takes 1's slot
        (60, 70, "192.0.2.1", VLC),  # overlaps 1 and 2
        (60, 70, "192.0.2.1", FIREFOX),  # another player
        (60, 70, "192.0.2.2", VLC),  # another address
        (150, 160, "192.0.2.1", VLC),  # 2 has ended, 3 holds slot 0
        (500, 500, "192.0.2.1", VLC),
        (500, 600, "192.0.2.1", VLC),
    ]
    lines = [
        log_line(ip, BASE + end, "/live.mp3", end - start, agent, sent=4096)
        for start, end, ip, agent in connections
    ]
    events = plan_lines(
        lines, config=config, source=config.sources[0], key="k" * 64, counts=Counts()
    )
    slots = {int(e.session.client_id): e.session.slot for e in events}
    assert [slots[n] for n in range(1, 10)] == [0, 1, 0, 2, 0, 0, 1, 0, 0]


def read_lines(path: Path, advance: Callable[[int], object] | None = None) -> list[str]:
    return [line for text in read_texts(path, advance) for line in text_lines(text)]


def test_read_texts_decodes_and_reports_progress(tmp_path: Path) -> None:
    path = tmp_path / "log.gz"
    data = b"first\r\nsecond \xff\xfe line\nthird"
    path.write_bytes(gzip.compress(data))
    seen: list[int] = []
    assert read_lines(path, seen.append) == ["first", "second \ufffd\ufffd line", "third"]
    assert sum(seen) == path.stat().st_size
    plain = tmp_path / "log"
    plain.write_bytes(data)
    assert key_of(plain) == key_of(path)


def key_of(path: Path) -> str:
    digest = hashlib.sha256()
    for _text in read_texts(path, digest=digest):
        pass
    return digest.hexdigest()


def journaled_session(store: Store, instance: str, keepalives: int) -> int:
    """Journal a session of `instance` (its start and keep-alives, as an import of a file with
    the key `instance` does); returns how many events."""
    session = Session("main", instance, "/live.mp3", "1", "192.0.2.1", VLC, "", BASE, 0)
    events: list[Event] = [SessionStarted(session)]
    events += [
        SessionKeptAlive(session, BASE + 60 * n, BASE + 60 * (n - 1))
        for n in range(1, 1 + keepalives)
    ]
    store.commit_import(
        instance, "main", "log", 1, [Stamped(e, "0123456789abcdef") for e in events]
    )
    return len(events)


def test_delivery_gives_up_after_failures_and_keeps_the_requests(
    tmp_path: Path, matomo: RecordingMatomo
) -> None:
    config = config_for(matomo, tmp_path)
    assert config.matomo is not None
    store = Store.open(tmp_path / "state.db")
    try:
        assert journaled_session(store, "import:k", 11) == 12
        console = Console(file=io.StringIO())
        matomo.fail_with(500)
        result = asyncio.run(
            deliver(store, config, "s", console, backoff=Backoff(0.01, 0.02), max_failures=3)
        )
        assert (result.sent, result.left, result.complete) == (0, 12, False)
        assert matomo.failed_posts == 3
        matomo.recover()
        result = asyncio.run(deliver(store, config, "s", console))
        assert (result.sent, result.left, result.complete) == (12, 0, True)
        assert len(matomo.requests) == 12
    finally:
        store.close()


def test_delivery_counts_the_imported_events_only(tmp_path: Path, matomo: RecordingMatomo) -> None:
    """A running daemon's live events journaled among an import's go along (the journal is
    sent in order), but what the import reports as delivered is its own."""
    config = config_for(matomo, tmp_path)
    store = Store.open(tmp_path / "state.db")
    try:
        before = journaled_session(store, "2026-12-03T10:00:00+0000", 2)
        imported = journaled_session(store, "import:k", 4)
        journaled_session(store, "2026-12-03T10:00:01+0000", 1)
        result = asyncio.run(deliver(store, config, "s", Console(file=io.StringIO())))
        assert (result.sent, result.left, result.complete) == (imported, 0, True)
        assert len(matomo.requests) >= before + imported
    finally:
        store.close()


# -- beside `audimeter run` -----------------------------------------------------------------


def test_import_beside_a_running_daemon_sends_nothing_twice(
    tmp_path: Path, matomo: RecordingMatomo
) -> None:
    """A station imports yesterday's log while `audimeter run` polls a real Icecast with a
    listener on the same state file: both may send from the outbox, every request arrives once."""
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    played = [
        Played(f"198.51.100.{i % 250 + 1}", (VLC, FIREFOX, EXO)[i % 3], BASE + 40 * i, 30 + i % 90)
        for i in range(300)
    ]
    log = write_log(tmp_path / "access.log.1", played)
    with IcecastServer(tmp_path / "icecast") as icecast, SourceClient(icecast, "/live.mp3"):
        config = tmp_path / "audimeter.toml"
        config.write_text(
            f"""
[state]
path = "{tmp_path / "state.db"}"

[matomo]
url = "{matomo.url}"
site_id = 1
token_auth = "{DEFAULT_TOKEN}"
keepalive_interval = 2
visit_length = 10
batch_size = 7
import_batch_size = 7

[[sources]]
name = "main"
kind = "icecast"
url = "{icecast.url}"
username = "{icecast.admin_auth[0]}"
password = "{icecast.admin_auth[1]}"
poll_interval = 0.5
"""
        )
        config.chmod(0o600)
        matomo.delay(0.02)  # slow enough that the two processes meet at the outbox
        with AudimeterProcess(config) as daemon:
            with Listener(icecast, "/live.mp3", bind="127.0.0.91", user_agent=VLC):
                wait_for(lambda: matomo.requests, 10, "the live start")
                result = audimeter_import(config, "--source", "main", log)
                assert result.returncode == 0, result.stdout + result.stderr
                assert result.stderr == ""

            def live() -> list[dict[str, str]]:
                return [r.params for r in matomo.requests if r.params.get("cip") == "127.0.0.91"]

            wait_for(lambda: any(p.get("e_a") == "end" for p in live()), 15, "the live end")
            # Matomo has the end before the daemon commits its cursor past it: the daemon is
            # killed on leaving this block, so first it must have settled what it sent.
            wait_for(lambda: state_outbox(tmp_path / "state.db") == 0, 15, "the cursor at the end")
            assert daemon.running
            logs = daemon.logs()
    queued = int(result.stdout.split(" events journaled")[0].rsplit(" ", 1)[1])
    assert f"matomo: {queued} requests delivered" in result.stdout
    payloads = [tuple(sorted(r.params.items())) for r in matomo.requests]
    assert len(payloads) == len(set(payloads))  # nothing twice
    imported = [r for r in matomo.requests if r.params.get("cip", "").startswith("198.51.100.")]
    assert len(imported) == queued
    assert len(matomo.model(10).visits()) == len(played) + 1
    assert " ERROR " not in logs
    assert state_outbox(tmp_path / "state.db") == 0


def state_outbox(path: Path) -> int:
    store = Store.open(path)
    try:
        return store.matomo_pending()
    finally:
        store.close()


def test_a_25_log_imports_the_players_the_listeners_sent(
    tmp_path: Path, matomo: RecordingMatomo
) -> None:
    """Icecast 2.5 writes quotes, backslashes and UTF-8 of a player as \\xNN in its log: the
    import sends the players themselves, so each visitor id is the one `audimeter run` gave the
    same listener (polled, its log line giving the exact end). The one exception is a player
    that is not UTF-8: the listing shows none, the log its bytes (U+FFFD for each)."""
    config = config_for(matomo, tmp_path)
    assert config.matomo is not None
    mapper = mapper_for(config, config.matomo, "salt")
    imported = list(
        plan_lines(
            read_lines(ICECAST_25 / "access.log"),
            config=config,
            source=config.sources[0],
            key="k" * 64,
            counts=Counts(),
        )
    )
    live = Sessionizer(keepalive_interval=KEEPALIVE, outage_grace=60, exact_ends={"main": 30})
    run = [e for o in live_observations(ICECAST_25, "main") for e in live.observe(o)]

    def visitors(events: list[Event]) -> dict[tuple[str, int], tuple[str, int, str]]:
        return {
            (e.session.ip, e.session.started_at): (
                e.session.user_agent,
                e.session.slot,
                mapper.params(e)["cid"],
            )
            for e in events
            if isinstance(e, SessionStarted) and e.session.mount == "/live.mp3"
        }

    by_import, by_run = visitors(imported), visitors(run)
    assert by_import.keys() == by_run.keys()
    assert len(by_run) == 10
    not_utf8 = [key for key, (agent, _, _) in by_import.items() if "\ufffd" in agent]
    assert [by_run[key][0] for key in not_utf8] == [""]
    players = {key: agent for key, (agent, _, _) in by_import.items() if key not in not_utf8}
    assert players == {key: by_run[key][0] for key in players}
    assert {'Winamp/5.9 "beta" (test\\build)', "Radio Ünï Player/1.0"} <= set(players.values())
    assert not any("\\x" in agent for agent in players.values())
    # A session `run` knows from its log line alone (the long player's reconnect) takes a slot
    # no session that ended since used; the import reuses the slot: only the slot differs.
    same_slot = [key for key in players if by_import[key][1] == by_run[key][1]]
    assert len(same_slot) == 8
    assert all(by_import[key][2] == by_run[key][2] for key in same_slot)

    # `audimeter import` sends them so
    result = audimeter_import(
        write_config(tmp_path, matomo), "--source", "main", ICECAST_25 / "access.log"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sent = {visit.user_agent for visit in matomo.model(VISIT_LENGTH).visits()}
    assert set(players.values()) <= sent
    assert not any("\\x" in (agent or "") for agent in sent)


@pytest.mark.parametrize(
    ("ip", "countries"), [("full", ["AT", "JP"]), ("anonymize", ["AT", "JP"]), ("none", [""])]
)
def test_an_import_records_players_and_countries_as_privacy_allows(
    tmp_path: Path, ip: str, countries: list[str]
) -> None:
    """The history keeps each session's player and the country of the address [privacy]
    lets audimeter keep (its network is in the same country; no address, no country)."""
    database = write_countries(tmp_path / "countries.mmdb")
    config = write_config(tmp_path, None)
    with config.open("a") as file:
        file.write(f'\n[history]\ngeoip = "{database}"\n\n[privacy]\nip = "{ip}"\n')
    result = audimeter_import(config, "--source", "main", write_log(tmp_path / "a.log", LISTENERS))
    assert result.returncode == 0, result.stderr
    rows = sqlite3.connect(tmp_path / "state.db").execute(
        "SELECT user_agent, player, country FROM history"
    )
    players = {agent: player for agent, player, _ in rows.fetchall()}
    assert players == {VLC: "VLC", FIREFOX: "Firefox", EXO: "Android Browser"}
    found = sqlite3.connect(tmp_path / "state.db").execute(
        "SELECT DISTINCT country FROM history ORDER BY 1"
    )
    assert [country for (country,) in found] == countries


def test_an_import_without_matomo_fills_the_history_and_json_lines(tmp_path: Path) -> None:
    """No [matomo]: the import is not refused; each imported session is one history row, and
    every event one line of the [jsonl] file."""
    log = write_log(tmp_path / "access.log", LISTENERS)
    config = write_config(tmp_path, None)
    lines = tmp_path / "sessions.jsonl"
    with config.open("a") as file:
        file.write(f'\n[jsonl]\npath = "{lines}"\n')
    result = audimeter_import(config, "--source", "main", log)
    assert result.returncode == 0, result.stderr
    journaled = int(result.stdout.split(" events journaled")[0].rsplit(" ", 1)[1])
    sessions = int(result.stdout.split(" listener sessions")[0].rsplit(" ", 1)[1])
    state = sqlite3.connect(tmp_path / "state.db")
    history = state.execute("SELECT seconds, reason FROM history").fetchall()
    assert len(history) == sessions
    assert {reason for _, reason in history} == {"left"}
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(records) == journaled
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    ends = [r for r in records if r["event"] == "end"]
    assert len(ends) == len(history)
    assert all(r["visitor_id"] for r in records)
