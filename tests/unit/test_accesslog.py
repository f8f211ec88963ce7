"""Access log lines: real logs of Icecast 2.4.4, 2.5 and KH (tests/fixtures), and SHOUTcast's W3C
log."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audimeter.sources.accesslog import (
    _STAMP,
    LogEntry,
    Skip,
    _icecast_end,
    icecast_spans,
    is_directive,
    is_listener,
    parse_icecast_line,
    parse_shoutcast_line,
    parser_for,
    scan_icecast_line,
    scan_shoutcast_line,
    scanner_for,
    spans_for,
    stamp_end,
)
from tests.support.fixtures import ICECAST_24, ICECAST_25, ICECAST_KH

FIXTURES = ICECAST_24
VLC = "VLC/3.0.18 LibVLC/3.0.18"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"
EXO = "ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2"
PLAYER = "https://www.example.org/player.html"


def utc(text: str) -> int:
    """Unix seconds of "YYYY-MM-DD HH:MM:SS" UTC."""
    return calendar.timegm(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").timetuple())


def listener(
    clock: str, duration: int, path: str, sent: int, agent: str, referrer: str = ""
) -> LogEntry:
    return LogEntry(
        "127.0.0.1", utc(f"2026-11-26 {clock}"), duration, "GET", path, 200, sent, referrer, agent
    )


# Every listener line of access.log.run1, by line number; access.log.run2 repeats run1's 47 lines
# and adds a restart, with two more listeners.
RUN1_LISTENERS = {
    18: listener("12:44:15", 1, "/live.mp3", 78859, "HeaderProbe/1.0"),
    20: listener("12:44:20", 11, "/live.mp3", 241188, FIREFOX, PLAYER),
    25: listener("12:44:24", 16, "/live.mp3", 314090, VLC),
    27: listener("12:44:30", 3, "/auth.mp3", 109588, FIREFOX, PLAYER),
    28: listener("12:44:35", 3, "/auth.mp3", 108188, "ProbeAccept/1.0"),
    29: listener(
        "12:44:37", 2, "/authcase.mp3", 94192, "CaseTest/1.0", "https://www.example.org/case.html"
    ),
    33: listener("12:44:40", 2, "/auth.mp3", 91388, "SurvivesBackendDown/1.0"),
    35: listener("12:45:25", 43, "/auth.mp3", 171188, "ProbeSlow5/1.0"),
    36: listener("12:45:37", 21, "/auth.mp3", 80188, "ProbeSerialA/1.0"),
    37: listener("12:45:37", 21, "/auth.mp3", 388, "ProbeSerialB/1.0"),
    38: listener("12:45:42", 7, "/auth.mp3", 137588, "ProbeTimelimit/1.0"),
    41: listener("12:45:47", 97, "/live.mp3", 1615988, EXO),
    42: listener("12:45:47", 85, "/live.mp3", 1419988, FIREFOX, PLAYER),
    43: listener("12:45:47", 3, "/live.mp3", 109588, "ShutdownTest2/1.0"),
    46: listener("12:45:47", 81, "/auth.mp3", 1354307, VLC),
    47: listener("12:45:47", 3, "/auth.mp3", 109588, "ShutdownTest1/1.0"),
}
RUN2_LISTENERS = {
    **RUN1_LISTENERS,
    52: listener("12:45:56", 3, "/live.mp3", 88588, "AfterRestart/1.0"),
    53: listener("12:45:56", 1, "/live.mp3", 77388, "AfterRestart2/1.0"),
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("access.log.run1", RUN1_LISTENERS), ("access.log.run2", RUN2_LISTENERS)],
)
def test_every_line_of_the_real_logs(name: str, expected: dict[int, LogEntry]) -> None:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    listeners = {}
    for number, line in enumerate(lines, 1):
        entry = parse_icecast_line(line)
        assert entry is not None, f"line {number} not parsed: {line}"
        assert entry.ip == "127.0.0.1"
        assert entry.end >= utc("2026-11-26 12:44:05")
        if is_listener(entry):
            listeners[number] = entry
    assert listeners == expected
    assert all(entry.start == entry.end - entry.duration for entry in listeners.values())


# Icecast-KH and 2.5.0-rc2 logs of the same scenario (tests/fixtures/SOURCES.md), read as the
# tailer and `audimeter import` read them: UTF-8, bytes that are not UTF-8 as U+FFFD. KH cuts the
# long user agent at 150 bytes and writes `"`, backslashes and UTF-8 raw; 2.5 escapes them as
# \xNN, which reads back as what the listener sent. Both logs hold a listener whose user agent is
# Latin-1 (`Player M\xfcller/1.0`).
LONG = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0 OPR/115.0.0.0 AudimeterLongUATest/1.0 "
    '(extra "quoted" part)'
)
LONG_CUT = LONG.encode()[:150].decode()
FIREFOX_133 = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
VLC_20 = "VLC/3.0.20 LibVLC/3.0.20"
WINAMP = 'Winamp/5.9 "beta" (test\\build)'
RADIO = "Radio Ünï Player/1.0"
CAP = 'CapPlayer/1.0 "q" Ünï'
LATIN_1 = "Player M\ufffdller/1.0"
PAGE = "https://radio.example/player"


def at(
    ip: str,
    clock: str,
    duration: int,
    sent: int,
    agent: str,
    path: str = "/live.mp3",
    ref: str = "",
) -> LogEntry:
    end = utc(f"2026-12-03 {clock}")
    return LogEntry(ip, end, duration, "GET", path, 200, sent, ref, agent)


KH_LISTENERS = {
    17: at("127.0.0.52", "07:09:35", 23, 433841, FIREFOX_133),
    48: at("127.0.0.51", "07:10:53", 101, 1677684, VLC_20, ref=PAGE),
    49: at("127.0.0.53", "07:10:53", 101, 1677684, LONG_CUT),
    68: at("127.0.0.53", "07:11:39", 37, 606876, LONG_CUT),
    100: at("127.0.0.54", "07:12:29", 14, 292153, WINAMP),
    101: at("127.0.0.57", "07:12:29", 14, 289645, "QueryPlayer/1.0"),  # KH logs the query
    102: at("127.0.0.55", "07:12:29", 14, 289645, RADIO),
    103: at("127.0.0.56", "07:12:33", 3, 102818, "ShortProbe/1.0"),
    128: at(
        "127.0.0.61",
        "07:13:13",
        14,
        290899,
        "HookPlayer/2.0 (KH)",
        "/auth.mp3",
        "https://hook.example/page",
    ),
    149: at("127.0.0.62", "07:13:39", 4, 75233, CAP, "/authcap.mp3", "https://cap.example/p?a=1"),
    453: at("127.0.0.58", "07:19:58", 15, 292153, LATIN_1),
    495: at("127.0.0.64", "07:20:47", 7, 166766, "CapList/1.0", "/authcap.mp3"),
    506: at("127.0.0.51", "07:20:55", 593, 9490579, VLC_20, ref=PAGE),
}
ICECAST_25_LISTENERS = {
    20: at("127.0.0.72", "07:14:43", 22, 423248, FIREFOX_133),
    43: at("127.0.0.73", "07:15:40", 79, 1330448, LONG),
    45: at("127.0.0.71", "07:15:40", 79, 1330448, VLC_20, ref=PAGE),
    67: at("127.0.0.73", "07:16:23", 34, 564648, LONG),
    77: at("127.0.0.75", "07:16:35", 12, 253848, RADIO),
    78: at("127.0.0.74", "07:16:35", 12, 253848, WINAMP),
    79: at("127.0.0.77", "07:16:35", 12, 253848, "QueryPlayer/1.0"),
    84: at("127.0.0.76", "07:16:38", 2, 95648, "ShortProbe/1.0"),
    141: at(
        "127.0.0.81",
        "07:17:49",
        26,
        472248,
        "HookPlayer/2.0 (2.5)",
        "/auth.mp3",
        "https://hook.example/page",
    ),
    150: at("127.0.0.82", "07:18:00", 5, 125051, CAP, "/authcap.mp3", "https://cap.example/p?a=1"),
    211: at("127.0.0.78", "07:19:58", 15, 287448, LATIN_1),
    253: at("127.0.0.84", "07:20:47", 7, 160051, "CapList/1.0", "/authcap.mp3"),
    258: at("127.0.0.71", "07:20:55", 306, 4910248, VLC_20, ref=PAGE),
}


def real_lines(path: Path) -> list[str]:
    """A log's lines as the tailer and `audimeter import` decode them."""
    return [line.decode("utf-8", "replace") for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [(ICECAST_KH, KH_LISTENERS), (ICECAST_25, ICECAST_25_LISTENERS)],
    ids=["kh", "2.5"],
)
def test_every_line_of_the_kh_and_25_logs(folder: Path, expected: dict[int, LogEntry]) -> None:
    listeners = {}
    for number, line in enumerate(real_lines(folder / "access.log"), 1):
        entry = parse_icecast_line(line)
        assert entry is not None, f"line {number} not parsed: {line}"
        assert entry.end >= utc("2026-12-03 07:09:01")
        if is_listener(entry):
            listeners[number] = entry
    assert listeners == expected


@pytest.mark.parametrize(
    ("written", "read"),
    [
        # Icecast 2.5: decoded
        ("Winamp/5.9 \\x22beta\\x22 (test\\x5cbuild)", WINAMP),
        ("Radio \\xc3\\x9cn\\xc3\\xaf Player/1.0", RADIO),
        ("bang\\x21 tick\\x60 tab\\x09 del\\x7f", "bang! tick` tab\t del\x7f"),
        ("Upper \\xC3\\x9C", "Upper Ü"),
        ("Player M\\xfcller/1.0", LATIN_1),  # not UTF-8: as a raw line reads it
        # Icecast-KH and 2.4: kept as written
        ('Winamp/5.9 "beta" (test\\build)', WINAMP),  # raw quote and backslash
        ("C:\\xfiles\\player", "C:\\xfiles\\player"),  # a backslash that starts no escape
        ("Say\\x21 hi!", "Say\\x21 hi!"),  # 2.5 would have escaped the raw `!`
        ("Ünï \\x41", "Ünï \\x41"),  # 2.5 would have escaped the raw UTF-8
        ("Quote .q. back.slash ..n..", "Quote .q. back.slash ..n.."),  # 2.4's dots
        ("half \\x4", "half \\x4"),
    ],
)
def test_escaped_user_agents_and_referrers(written: str, read: str) -> None:
    line = with_('"-" "VLC/3.0"', f'"https://a.example/?q={written}" "{written}"')
    entry = parse_icecast_line(line)
    assert entry is not None
    assert (entry.user_agent, entry.referrer) == (read, f"https://a.example/?q={read}")


def test_other_fields_of_real_lines() -> None:
    line = (
        '127.0.0.1 - - [26/Nov/2026:12:45:10 +0000] "GET /auth.mp3 HTTP/1.1" 401 328 "-" '
        '"ProbeSlow20/1.0" 16'
    )
    assert parse_icecast_line(line) == LogEntry(
        "127.0.0.1",
        utc("2026-11-26 12:45:10"),
        16,
        "GET",
        "/auth.mp3",
        401,
        328,
        "",
        "ProbeSlow20/1.0",
    )
    source = (
        '127.0.0.1 - - [26/Nov/2026:12:45:47 +0000] "PUT /live.mp3 HTTP/1.1" 200 19 "-" '
        '"lab-python-source/1.0" 102'
    )
    entry = parse_icecast_line(source)
    assert entry is not None
    assert (entry.method, entry.duration, entry.start) == ("PUT", 102, utc("2026-11-26 12:44:05"))


# Captured from Debian's icecast2 2.4.4 here: a listener sent the user agent
# `Quote "q" back\slash tick` bang! Ünï 日本`, the referrer `https://ex.org/p?a=1&b="x y"` and
# `/live.mp3?token=abc&x=1`; another sent empty User-Agent and Referer headers; a request for
# a mount that does not exist, and a HEAD.
REAL_ODD_LINES = [
    (
        '127.0.0.1 - - [26/Nov/2026:15:14:41 +0000] "GET /live.mp3 HTTP/1.0" 200 35309 '
        '"https://ex.org/p?a=1&b=.x y." "Quote .q. back.slash tick. bang. ..n.. ......" 2',
        LogEntry(
            "127.0.0.1",
            utc("2026-11-26 15:14:41"),
            2,
            "GET",
            "/live.mp3",
            200,
            35309,
            "https://ex.org/p?a=1&b=.x y.",
            "Quote .q. back.slash tick. bang. ..n.. ......",
        ),
    ),
    (
        '127.0.0.1 - - [26/Nov/2026:15:14:41 +0000] "GET /live.mp3 HTTP/1.0" 200 35309 "-" "-" 2',
        LogEntry(
            "127.0.0.1", utc("2026-11-26 15:14:41"), 2, "GET", "/live.mp3", 200, 35309, "", ""
        ),
    ),
    (
        '127.0.0.1 - - [26/Nov/2026:15:14:42 +0000] "GET /no%20such%22mount.mp3 HTTP/1.0" 404 '
        '362 "-" "x" 0',
        LogEntry(
            "127.0.0.1",
            utc("2026-11-26 15:14:42"),
            0,
            "GET",
            "/no%20such%22mount.mp3",
            404,
            362,
            "",
            "x",
        ),
    ),
    (
        '127.0.0.1 - - [26/Nov/2026:15:14:42 +0000] "HEAD /live.mp3 HTTP/1.0" 400 333 "-" '
        '"headprobe" 0',
        LogEntry(
            "127.0.0.1",
            utc("2026-11-26 15:14:42"),
            0,
            "HEAD",
            "/live.mp3",
            400,
            333,
            "",
            "headprobe",
        ),
    ),
]


@pytest.mark.parametrize(("line", "expected"), REAL_ODD_LINES)
def test_fields_as_icecast_writes_them(line: str, expected: LogEntry) -> None:
    assert parse_icecast_line(line) == expected


BASE = (
    '203.0.113.9 - - [26/Nov/2026:12:44:05 +0000] "GET /live.mp3 HTTP/1.1" 200 4096 "-" '
    '"VLC/3.0" 30'
)


def with_(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


@pytest.mark.parametrize(
    ("line", "end", "ip", "path", "referrer", "agent"),
    [
        (BASE, "2026-11-26 12:44:05", "203.0.113.9", "/live.mp3", "", "VLC/3.0"),
        (with_("+0000", "+0100"), "2026-11-26 11:44:05", "203.0.113.9", "/live.mp3", "", "VLC/3.0"),
        (with_("+0000", "-0530"), "2026-11-26 18:14:05", "203.0.113.9", "/live.mp3", "", "VLC/3.0"),
        (
            with_("26/Nov/2026:12:44:05", "31/Dec/2026:23:59:59"),
            "2026-12-31 23:59:59",
            "203.0.113.9",
            "/live.mp3",
            "",
            "VLC/3.0",
        ),
        (
            with_("203.0.113.9", "2001:db8::7"),
            "2026-11-26 12:44:05",
            "2001:db8::7",
            "/live.mp3",
            "",
            "VLC/3.0",
        ),
        (with_("- -", "- fred"), "2026-11-26 12:44:05", "203.0.113.9", "/live.mp3", "", "VLC/3.0"),
        (
            with_("/live.mp3", "/live.mp3?token=1"),
            "2026-11-26 12:44:05",
            "203.0.113.9",
            "/live.mp3",
            "",
            "VLC/3.0",
        ),
        (
            with_('"-" "VLC/3.0"', '"https://a.example/" "Say "hi" now"'),
            "2026-11-26 12:44:05",
            "203.0.113.9",
            "/live.mp3",
            "https://a.example/",
            'Say "hi" now',
        ),
        (BASE + "\r", "2026-11-26 12:44:05", "203.0.113.9", "/live.mp3", "", "VLC/3.0"),
    ],
)
def test_icecast_variants(
    line: str, end: str, ip: str, path: str, referrer: str, agent: str
) -> None:
    entry = parse_icecast_line(line)
    assert entry is not None
    assert (entry.end, entry.ip, entry.path, entry.referrer, entry.user_agent) == (
        utc(end),
        ip,
        path,
        referrer,
        agent,
    )
    assert (entry.duration, entry.sent, entry.status, entry.method) == (30, 4096, 200, "GET")


BAD_ICECAST = [
    "",
    "   ",
    "garbage",
    BASE[:60],
    BASE[:-5],  # cut off
    with_(" 30", " thirty"),
    with_(" 200 ", " OK "),
    with_(" 4096 ", " -1 "),
    with_("Nov", "Foo"),
    with_("26/Nov", "31/Nov"),
    with_("12:44:05", "24:44:05"),
    with_("12:44:05", "12:61:05"),
    with_(" +0000", ""),
    with_('"GET /live.mp3 HTTP/1.1"', '"GET"'),
    with_('"GET /live.mp3 HTTP/1.1"', "GET /live.mp3 HTTP/1.1"),
    with_('"VLC/3.0" 30', '"VLC/3.0"'),
    "203.0.113.7 203.0.113.7 2026-11-26 12:44:05 /stream?title=x 200 VLC 480000 30 128",
    with_("26/Nov", "31/Nov").replace("/live.mp3", "/status-json.xsl"),
]


@pytest.mark.parametrize("line", BAD_ICECAST)
def test_icecast_bad_lines(line: str) -> None:
    assert parse_icecast_line(line) is None


def entry(
    path: str = "/live.mp3",
    method: str = "GET",
    status: int = 200,
    duration: int = 30,
    sent: int = 4096,
) -> LogEntry:
    return LogEntry("203.0.113.9", 1_795_000_000, duration, method, path, status, sent, "", "VLC")


CLASSIFIED = [
    (entry(), True),
    (entry(path="/stream"), True),
    (entry(path="/radio/high.aac"), True),
    (entry(duration=1), True),
    (entry(duration=0), True),  # left within the second, but was sent the stream
    (entry(sent=0), True),  # connected 30 s, nothing sent yet (a source gap)
    (entry(duration=0, sent=0), False),  # nothing at all
    (entry(method="PUT"), False),  # a source client
    (entry(method="SOURCE"), False),
    (entry(method="HEAD"), False),
    (entry(method="POST"), False),
    (entry(status=401, duration=16), False),  # refused after a slow auth backend
    (entry(status=403), False),
    (entry(status=404), False),
    (entry(status=206), False),
    (entry(status=302), False),
    (entry(path="/admin/listclients", duration=0), False),
    (entry(path="/admin/metadata", duration=0), False),
    (entry(path="/admin/", duration=0), False),
    (entry(path="/admin", duration=0), False),
    (entry(path="/admin.cgi", duration=0), False),
    (entry(path="/status-json.xsl", duration=0), False),
    (entry(path="/status.xsl", duration=0), False),
    (entry(path="/status2.xsl", duration=0), False),
    (entry(path="/server_version.xsl", duration=0), False),
    (entry(path="/server_version", duration=0), False),
    (entry(path="/admin/listclients.xsl", duration=0), False),
    (entry(path="/", duration=0), False),
    (entry(path="/style.css", duration=0), False),
    (entry(path="/favicon.ico", duration=0), False),
    (entry(path="/icecast.png", duration=0), False),
    (entry(path="/robots.txt", duration=0), False),
    (entry(path="/live.mp3.m3u", duration=0), False),
    (entry(path="/live.mp3.xspf", duration=0), False),
    (entry(path="/listen.pls", duration=0), False),
    (entry(path="/stats", duration=0), False),
    (entry(path="/statistics", duration=0), False),
    (entry(path="/currentsong", duration=0), False),
    (entry(path="/7.html", duration=0), False),
]


@pytest.mark.parametrize(("case", "expected"), CLASSIFIED)
def test_classification(case: LogEntry, expected: bool) -> None:
    assert is_listener(case) is expected


# -- SHOUTcast W3C: lines written by hand from the format DNAS writes (sc_serv's w3cLog::log:
# "<ip> <dns> <date> <time> /stream?title=<escaped title> 200 <escaped agent> <bytes> <seconds>
# <bitrate>"), since no DNAS runs here.


@pytest.fixture
def tz_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from _zone(monkeypatch, "UTC")


@pytest.fixture
def tz_berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from _zone(monkeypatch, "Europe/Berlin")


def _zone(monkeypatch: pytest.MonkeyPatch, zone: str) -> Iterator[None]:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


W3C = (
    "203.0.113.7 203.0.113.7 2026-11-26 12:44:05 /stream?title=Artist%20-%20Song 200 "
    "VLC%2F3.0.18%20LibVLC%2F3.0.18 480000 30 128"
)


@pytest.mark.usefixtures("tz_utc")
@pytest.mark.parametrize(
    ("line", "ip", "agent", "sent", "duration"),
    [
        (W3C, "203.0.113.7", VLC, 480000, 30),
        (  # spaces written as "+" (older DNAS)
            "198.51.100.4 198.51.100.4 2026-11-26 12:44:05 /stream?title=Unknown 200 "
            "WinampMPEG/5.66,+Ultravox/2.1 16000 1 128",
            "198.51.100.4",
            "WinampMPEG/5.66, Ultravox/2.1",
            16000,
            1,
        ),
        (  # RFC 3986 escaping as DNAS 2 writes it, a literal "+" as %2B, UTF-8
            "198.51.100.4 host.example.net 2026-11-26 12:44:05 /stream?title=Unknown 200 "
            "%C3%9Cber%2BPlayer%2F1.0%20%28Linux%29 0 3600 128",
            "198.51.100.4",
            "Über+Player/1.0 (Linux)",
            0,
            3600,
        ),
        (  # an unescaped user agent with spaces (not DNAS 2; tolerated)
            "198.51.100.4 198.51.100.4 2026-11-26 12:44:05 /stream?title=Unknown 200 "
            "NSPlayer/12.0 WMFSDK/12.0 100 5 128",
            "198.51.100.4",
            "NSPlayer/12.0 WMFSDK/12.0",
            100,
            5,
        ),
        (
            "2001:db8::7 2001:db8::7 2026-11-26 12:44:05 /stream?title=Unknown 200 - 100 5 128",
            "2001:db8::7",
            "",
            100,
            5,
        ),
        (W3C + "\r", "203.0.113.7", VLC, 480000, 30),
    ],
)
def test_w3c_lines(line: str, ip: str, agent: str, sent: int, duration: int) -> None:
    assert not is_directive(line)
    assert parse_shoutcast_line(line) == LogEntry(
        ip, utc("2026-11-26 12:44:05"), duration, "GET", "/stream", 200, sent, "", agent
    )


@pytest.mark.usefixtures("tz_utc")
def test_w3c_line_from_a_hosting_provider_s_documentation() -> None:
    # The example fields of streamsolutions.co.uk's logging help (a DNAS 1 log): even the "."
    # of the user agent is escaped.
    line = (
        "10.1.1.1 10.1.1.1 2005-10-10 00:12:02 /stream?title=WwW.StreamSolutions.Co.Uk 200 "
        "WinampMPEG%2F5%2E1 13227794 811 130480"
    )
    assert parse_shoutcast_line(line) == LogEntry(
        "10.1.1.1",
        utc("2005-10-10 00:12:02"),
        811,
        "GET",
        "/stream",
        200,
        13227794,
        "",
        "WinampMPEG/5.1",
    )


@pytest.mark.usefixtures("tz_berlin")
def test_w3c_times_are_local_time() -> None:
    entry = parse_shoutcast_line(W3C)
    assert entry is not None
    assert entry.end == utc("2026-11-26 11:44:05")  # CET, one hour ahead of UTC
    summer = parse_shoutcast_line(W3C.replace("2026-11-26", "2026-07-01"))
    assert summer is not None
    assert summer.end == utc("2026-07-01 10:44:05")  # CEST


@pytest.mark.parametrize(
    "line",
    [
        "#Software: SHOUTcast",
        "#Version: 2.6.1.777 (posix(linux x64))",
        "#Fields: c-ip c-dns date time cs-uri-stem c-status cs(User-Agent) sc-bytes x-duration "
        "avgbandwidth",
    ],
)
def test_w3c_directives(line: str) -> None:
    assert is_directive(line)
    assert parse_shoutcast_line(line) is None


@pytest.mark.usefixtures("tz_utc")
@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        W3C.rsplit(" ", 1)[0],  # nine fields
        W3C.replace(" 30 ", " thirty "),
        W3C.replace(" 480000 ", " -1 "),
        W3C.replace(" 200 ", " OK "),
        W3C.replace("2026-11-26", "26/11/2026"),
        W3C.replace("2026-11-26", "2026-02-30"),
        W3C.replace("2026-11-26", "2026-13-01"),
        W3C.replace("12:44:05", "25:44:05"),
        W3C.replace("12:44:05", "12:44"),
        W3C.replace("/stream?", "stream?"),
        BASE,
    ],
)
def test_w3c_bad_lines(line: str) -> None:
    assert not is_directive(line)
    assert parse_shoutcast_line(line) is None


def test_w3c_listeners_are_listeners(tz_utc: None) -> None:
    entry = parse_shoutcast_line(W3C)
    assert entry is not None
    assert is_listener(entry)


def icecast_lines() -> list[str]:
    lines = [line for line, _ in REAL_ODD_LINES] + [BASE, BASE.replace(" 200 ", " 404 ")]
    for case, _ in CLASSIFIED:
        lines.append(
            BASE.replace('"GET /live.mp3', f'"{case.method} {case.path}')
            .replace(" 200 4096 ", f" {case.status} {case.sent} ")
            .replace(" 30", f" {case.duration}")
        )
    for name in ("access.log.run1", "access.log.run2"):
        lines += (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    lines += real_lines(ICECAST_KH / "access.log") + real_lines(ICECAST_25 / "access.log")
    return lines + BAD_ICECAST


def test_icecast_scanner_agrees_with_parser_and_classification() -> None:
    for line in icecast_lines():
        entry = parse_icecast_line(line)
        expected = Skip.BAD if entry is None else entry if is_listener(entry) else Skip.OTHER
        assert scan_icecast_line(line) == expected, line


def span_of_line(line: str) -> tuple[int, int] | None:
    """(end, seconds) of one line as `icecast_spans` reads it, told field by field: the
    three fields before the time have no spaces, the time has a fixed length, the seconds are
    the last field once trailing white space is stripped."""
    third = line.find(" ", line.find(" ", line.find(" ") + 1) + 1)
    if third < 0 or line[third + 1 : third + 2] != "[" or line[third + 28 : third + 29] != "]":
        return None
    end = stamp_end(line[third + 2 : third + 28])
    text = line.rstrip()
    last = text[text.rfind(" ") + 1 :]
    if end is None or len(last) > 18 or not last.isascii() or not last.isdigit():
        return None
    return end, int(last)


@settings(max_examples=500, deadline=None)
@given(
    stamp=st.one_of(
        st.builds(
            "{:02d}/{}/{:04d}:{:02d}:{:02d}:{:02d} {}{:04d}".format,
            st.integers(0, 32),
            st.sampled_from(("Jan", "Feb", "feb", "Xyz", "Dec")),
            st.integers(1969, 2100),
            st.integers(0, 25),
            st.integers(0, 61),
            st.integers(0, 99),
            st.sampled_from("+-"),
            st.integers(0, 1400),
        ),
        st.text(alphabet="0123456789/:+- FebNov٣", max_size=30),
    )
)
def test_a_time_told_by_its_minute_is_the_time_read_whole(stamp: str) -> None:
    match = _STAMP.fullmatch(stamp)
    assert stamp_end(stamp) == (None if match is None else _icecast_end(*match.groups()))
    assert stamp_end(stamp) == stamp_end(stamp)  # remembered alike


def span_rows(rows: list[tuple[str, str]]) -> list[tuple[int, int] | None]:
    spans: list[tuple[int, int] | None] = []
    for stamp, seconds in rows:
        end = stamp_end(stamp) if seconds else None
        spans.append(None if end is None else (end, int(seconds)))
    return spans


SPAN_EDGES = [
    BASE + "\r",
    BASE + " \t\x0b\x0c\x1c\u3000",  # white space str.rstrip strips
    BASE + " x",
    BASE + " 1234567890123456789",
    BASE.replace('"VLC/3.0" 30', '"VLC/3.0" 123456789012345678'),
    BASE.replace(" 30", "\t30"),
    BASE.replace(" 30", " ٣٠"),
    BASE.replace("203.0.113.7 - -", "203.0.113.7  -"),
    BASE.replace("203.0.113.7 - -", "203.0.113.7 -\t- x"),
    BASE.replace("203.0.113.7 - -", "é\x00 \ufffd -"),
    BASE.replace("[26/", "[32/"),
    BASE.replace("[26/Nov/2026:12:44:05 +0000]", "[26/Nov/2026:12:44:05 +0000 ]"),
    "a b c [26/Nov/2026:12:44:30 +0000] 5",
    "a b c [26/Nov/2026:12:44:30 +0000]5",
    "a b c [26/Nov/2026:12:44:30 +0000",
    "a [26/Nov/2026:12:44:30 +0000] 5",
    " [26/Nov/2026:12:44:30 +0000] 5 ",
]


def test_the_span_of_a_line_is_what_the_parser_reads() -> None:
    lines = icecast_lines() + SPAN_EDGES
    spans = 0
    for line in lines:
        rows = icecast_spans(line + "\n")
        assert rows[1:] == [("", "")], line
        span = span_rows(rows)[0]
        assert span == span_of_line(line), line
        entry = parse_icecast_line(line)
        if entry is not None:
            assert span in (None, (entry.end, entry.duration)), line
            spans += span is not None
    assert spans > len(CLASSIFIED)
    # A whole text at once: one row per line, empty lines and carriage returns included.
    text = "".join(f"{line}\n\n{line}\r\n" for line in lines)
    expected = [span for line in lines for span in (span_of_line(line), None, span_of_line(line))]
    assert span_rows(icecast_spans(text)) == [*expected, None]
    assert spans_for("shoutcast2") is None


@pytest.mark.usefixtures("tz_utc")
def test_shoutcast_scanner() -> None:
    assert scan_shoutcast_line(W3C) == parse_shoutcast_line(W3C)
    assert scan_shoutcast_line("#Fields: c-ip c-dns date time") is Skip.DIRECTIVE
    assert scan_shoutcast_line("garbage") is Skip.BAD
    assert scan_shoutcast_line(W3C.replace(" 200 ", " 404 ")) is Skip.OTHER


def test_parser_for_each_kind() -> None:
    assert parser_for("icecast") is parse_icecast_line
    assert parser_for("shoutcast2") is parse_shoutcast_line
    assert parser_for("shoutcast1") is parse_shoutcast_line
    with pytest.raises(ValueError, match="no access log format"):
        parser_for("wowza")
    assert scanner_for("icecast") is scan_icecast_line
    assert scanner_for("shoutcast1") is scan_shoutcast_line
    with pytest.raises(ValueError, match="no access log format"):
        scanner_for("wowza")
