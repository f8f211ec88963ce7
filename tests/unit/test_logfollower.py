"""Following a source's access log: finished listeners out, with the position to commit."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from audimeter.config import SourceConfig
from audimeter.observations import ListenerLeft, LogPosition
from audimeter.sources.logfollower import LogFollower

ICECAST_LISTENER = (
    '203.0.113.7 - - [26/Nov/2026:12:44:30 +0000] "GET /live.mp3 HTTP/1.1" 200 10958 '
    '"http://example.org/" "VLC/3.0.18 LibVLC/3.0.18" 3\n'
)
ICECAST_ADMIN = (
    '127.0.0.1 - admin [26/Nov/2026:12:44:31 +0000] "GET /admin/stats HTTP/1.1" 200 2410 '
    '"-" "curl/8.5.0" 0\n'
)
ICECAST_END = 1_795_697_070
W3C_LISTENER = (
    "203.0.113.7 203.0.113.7 2026-11-26 12:44:05 /stream?title=A%20Song 200 VLC%2F3.0 48000 3 128\n"
)


def source(kind: str = "icecast") -> SourceConfig:
    return SourceConfig.model_validate(
        {"name": "main", "kind": kind, "url": "http://127.0.0.1:8000", "password": "hackme"}
    )


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(text)


def test_listeners_that_left_come_with_the_position_after_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(ICECAST_LISTENER)
    follower = LogFollower(source(), path, None)
    try:
        # First start: the lines already there are for `audimeter import`; the position where
        # reading starts is handed out, to be committed.
        start = LogPosition("main", str(path), path.stat().st_ino, len(ICECAST_LISTENER))
        assert follower.read() == ([], start)
        assert follower.read() is None
        append(path, ICECAST_ADMIN + "not a log line\n" + ICECAST_LISTENER)
        read = follower.read()
        assert read is not None
        left, position = read
        assert left == [
            ListenerLeft(
                "main",
                ICECAST_END,
                "/live.mp3",
                3,
                ip="203.0.113.7",
                user_agent="VLC/3.0.18 LibVLC/3.0.18",
                referrer="http://example.org/",
            )
        ]
        assert position.offset == path.stat().st_size
        assert follower.read() is None
    finally:
        follower.close()


def test_a_stored_position_is_resumed(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(ICECAST_LISTENER + ICECAST_LISTENER)
    stored = LogPosition("main", str(path), path.stat().st_ino, len(ICECAST_LISTENER))
    follower = LogFollower(source(), path, stored)
    try:
        read = follower.read()
        assert read is not None
        assert len(read[0]) == 1
        assert read[1].offset == 2 * len(ICECAST_LISTENER)
    finally:
        follower.close()


@pytest.mark.parametrize(("kind", "mount"), [("shoutcast1", "/"), ("shoutcast2", "")])
def test_shoutcast_logs_name_no_mount(tmp_path: Path, kind: str, mount: str) -> None:
    """DNAS logs /stream for every stream: DNAS 1 has only "/", and for DNAS 2 the sessionizer
    looks among the source's streams."""
    path = tmp_path / "sc_w3c.log"
    follower = LogFollower(source(kind), path, None)
    try:
        assert follower.read() == ([], LogPosition("main", str(path), 0, 0))  # no file yet
        path.write_text(W3C_LISTENER)
        read = follower.read()
        assert read is not None
        [left] = read[0]
        assert (left.mount, left.duration, left.user_agent) == (mount, 3, "VLC/3.0")
    finally:
        follower.close()


def test_an_unreadable_log_is_logged_once_and_once_readable_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="audimeter")
    path = tmp_path / "access.log"
    path.mkdir()
    follower = LogFollower(source(), path, None)
    try:
        for _ in range(3):
            assert follower.read() is None
        path.rmdir()
        path.write_text("")
        for _ in range(2):
            follower.read()
    finally:
        follower.close()
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert len(logged) == 2
    assert logged[0][0] == logging.WARNING
    assert logged[0][1].startswith(f"source main: cannot read the access log {path} (")
    assert logged[1] == (logging.INFO, f"source main: the access log {path} can be read again")


def test_unreadable_lines_are_counted_and_reported_now_and_then(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "access.log"
    path.write_text("")
    now = [0.0]
    follower = LogFollower(source(), path, None, clock=lambda: now[0])
    try:
        follower.read()
        append(path, "garbage\n" + ICECAST_LISTENER + "more garbage\n")
        follower.read()
        append(path, "garbage again\n")
        now[0] = 599.0
        follower.read()  # within the interval: counted, not reported yet
        append(path, ICECAST_LISTENER)
        now[0] = 600.0
        follower.read()
    finally:
        follower.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"source main: {count} line(s) of {path} are not Icecast access-log lines and were "
        "skipped; check that access_log names the server's access log"
        for count in (2, 1)
    ]


def test_w3c_directives_are_not_unreadable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "access.log"
    path.write_text("")
    follower = LogFollower(source("shoutcast2"), path, None)
    try:
        follower.read()
        append(path, "#Software: SHOUTcast\n#Fields: c-ip c-dns date time\n" + W3C_LISTENER)
        read = follower.read()
    finally:
        follower.close()
    assert read is not None
    assert len(read[0]) == 1
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
