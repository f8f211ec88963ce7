"""[privacy] end to end: the real daemon, an emulated SHOUTcast DNAS 2, a recording Matomo, and
`audimeter forget` on the state file it leaves."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.matomo import RecordingMatomo
from tests.support.shoutcast import DNAS2_ADMIN_PASSWORD, Dnas2Emulator

from .test_core import VLC, by_visitor, ended
from .test_shoutcast import FIREFOX, config_text, source_table

IPV4 = "203.0.113.57"
IPV6 = "2001:db8:abcd:12::7"
OTHER = "198.51.100.7"


def write_config(
    tmp_path: Path, matomo: RecordingMatomo, dnas: Dnas2Emulator, *privacy: str
) -> Path:
    return config_text(
        tmp_path,
        matomo,
        source_table("sc", "shoutcast2", dnas.url, DNAS2_ADMIN_PASSWORD),
        extra="\n".join(["[privacy]", *privacy]),
    )


def read(path: Path, query: str) -> list[tuple[str, ...]]:
    """Rows of the state file; none while the daemon has not created it yet."""
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute(query).fetchall()
    except sqlite3.OperationalError:  # created, not yet its tables
        return []
    finally:
        db.close()


def state_text(path: Path) -> str:
    """Every row of every table of the state file, as SQL."""
    db = sqlite3.connect(path)
    try:
        return "\n".join(db.iterdump())
    finally:
        db.close()


def state_bytes(path: Path) -> bytes:
    """The state file and its write-ahead log as stored, free pages included."""
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def open_sessions(path: Path) -> set[tuple[str, ...]]:
    return set(read(path, "SELECT ip, user_agent FROM sessions"))


def queued(path: Path) -> list[dict[str, str]]:
    """The journaled events' listener fields, named as Matomo's requests name them."""
    rows = read(path, "SELECT ip, user_agent, visitor_id FROM journal ORDER BY seq")
    return [{"cip": ip, "ua": ua, "cid": cid} for ip, ua, cid in rows]


def forget(config: Path, address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audimeter", "forget", "--config", str(config), "--ip", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_anonymize_and_drop_reach_matomo_and_the_state_file(tmp_path: Path) -> None:
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        config = write_config(tmp_path, matomo, dnas, 'ip = "anonymize"', 'user_agent = "drop"')
        state = tmp_path / "state.db"
        with AudimeterProcess(config) as run:
            four = dnas.add_listener(1, IPV4, VLC, referer="https://radio.example/", connected=20)
            six = dnas.add_listener(1, IPV6, FIREFOX)
            wait_for(lambda: len(by_visitor(matomo)) == 2, 10, "both starts")
            assert open_sessions(state) == {("203.0.113.0", ""), ("2001:db8:abcd::", "")}
            while_open = state_text(state)
            time.sleep(1)
            dnas.remove_listener(four)
            dnas.remove_listener(six)
            wait_for(lambda: ended(matomo, 2), 10, "both ends")
            code, _ = run.stop()
        assert code == 0
    assert {r.params["cip"] for r in matomo.requests} == {"203.0.113.0", "2001:db8:abcd::"}
    assert all("ua" not in r.params for r in matomo.requests)
    assert len(matomo.model(10).visits()) == 2  # each listener still one whole visit
    assert {s[0]["urlref"] for s in by_visitor(matomo).values() if "urlref" in s[0]} == {
        "https://radio.example/"
    }
    raw = state_bytes(state)
    for text in (while_open, state_text(state)):
        for secret in (IPV4, IPV6, quote(IPV6, safe=""), VLC, FIREFOX):
            assert secret not in text
    for secret in (IPV4, IPV6, quote(IPV6, safe=""), VLC, FIREFOX):
        assert secret.encode() not in raw
    assert "203.0.113.0" in while_open
    assert IPV4 not in run.logs() + run.output()


def test_none_sends_no_address(tmp_path: Path) -> None:
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        config = write_config(tmp_path, matomo, dnas, 'ip = "none"')
        state = tmp_path / "state.db"
        with AudimeterProcess(config):
            uid = dnas.add_listener(1, IPV4, VLC)
            wait_for(lambda: matomo.requests, 10, "the start")
            assert open_sessions(state) == {("", VLC)}
            dnas.remove_listener(uid)
            wait_for(lambda: ended(matomo), 10, "the end")
    assert matomo.requests
    assert all("cip" not in r.params for r in matomo.requests)
    assert {r.params["ua"] for r in matomo.requests} == {VLC}
    assert IPV4 not in state_text(state)


def test_forget_removes_queued_requests_and_open_sessions(tmp_path: Path) -> None:
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        matomo.fail_with(503)  # nothing is delivered: every request stays queued
        config = write_config(tmp_path, matomo, dnas)
        state = tmp_path / "state.db"
        four = dnas.add_listener(1, IPV4, VLC)
        six = dnas.add_listener(1, IPV6, VLC)
        dnas.add_listener(1, OTHER, FIREFOX)
        with AudimeterProcess(config) as run:
            wait_for(lambda: len(queued(state)) >= 3, 10, "three queued starts")
            busy = forget(config, IPV4)
            assert busy.returncode == 1
            assert "in use by another process" in busy.stderr
            assert sum(r["cip"] == IPV4 for r in queued(state)) >= 1  # nothing was removed
            code, _ = run.stop()
        assert code == 0
        assert open_sessions(state) == {(IPV4, VLC), (IPV6, VLC), (OTHER, FIREFOX)}
        requests_of_ipv4 = sum(r["cip"] == IPV4 for r in queued(state))

        done = forget(config, IPV4)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[:7] == [
            f"forgot {IPV4} in {state}:",
            "open sessions: 1 removed (their end will never be sent to Matomo)",
            "ended sessions kept to recognise late notices: 0 removed",
            f"journaled events: {requests_of_ipv4} removed (no output will ever send them)",
            "dead letters: 0 removed",
            "finished sessions in the history: 0 removed",
            "webhook notices: 0 removed",
        ]
        assert "Administration → Privacy → GDPR Tools" in lines[-1]
        expanded = forget(config, "2001:0DB8:ABCD:0012:0000:0000:0000:0007")
        assert expanded.returncode == 0, expanded.stderr
        assert "open sessions: 1 removed" in expanded.stdout
        assert forget(config, "203.0.113").returncode == 2

        assert open_sessions(state) == {(OTHER, FIREFOX)}
        assert {r["cip"] for r in queued(state)} == {OTHER}
        assert IPV4.encode() not in state_bytes(state)

        # The listeners left meanwhile; the next run delivers what is left, and nothing of them.
        dnas.remove_listener(four)
        dnas.remove_listener(six)
        matomo.recover()
        with AudimeterProcess(config):
            wait_for(lambda: not queued(state) and matomo.requests, 15, "the queue delivered")
    assert {r.params["cip"] for r in matomo.requests} == {OTHER}
