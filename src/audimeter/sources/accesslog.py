"""Lines of the servers' access logs, parsed: one finished connection per line.

Both servers write a line when a connection ends, with the time of the disconnect and how many
seconds it lasted, so a line is a whole session: it started at `end - duration`.

Icecast (2.4, also 2.5 and KH): the combined log format plus a last field, the seconds connected::

    127.0.0.1 - fred [26/Nov/2026:12:44:30 +0000] "GET /a.mp3 HTTP/1.1" 200 10958 "-" "VLC/3.0" 3

Icecast 2.4 and 2.5 log the requested path only; KH adds the query string, which is dropped
here. Icecast 2.4.4 never writes a raw `"` inside a field: in the user, request, referrer and
user agent it replaces every byte that is a control character, `!`, `"`, a backslash, a
backquote or outside ASCII by one `.` (spaces only survive in the referrer and user agent); a
missing header is `-`. Seen on Debian's icecast2 2.4.4: `Quote "q" back\\slash Ünï` is logged
as `Quote .q. back.slash ..n..`. Such a field is kept as written, since the original cannot be
recovered.

Icecast-KH writes the referrer and user agent raw (`"`, backslashes and UTF-8 as they came) but
cuts each at 150 bytes (`%.150s`), so a longer user agent is logged shortened. Icecast 2.5
writes `"`, the backslash, `!`, the backquote, control characters and every byte outside ASCII
as `\\xNN` (the backslash itself as `\\x5c`): `Winamp "beta" (test\\build) Ünï` is logged as
`Winamp \\x22beta\\x22 (test\\x5cbuild) \\xc3\\x9cn\\xc3\\xaf`. Such a referrer or user agent is
decoded back to what the listener sent (bytes that are not UTF-8 become U+FFFD, as in a raw
line). Which server wrote a line is told by the field itself: 2.5's form holds only printable
ASCII other than those four characters, and `\\xNN` escapes; 2.4 never writes a backslash, and
a raw field of KH is taken for 2.5's only if it holds such escapes and nothing else that 2.5
would have escaped, which a real player's user agent does not.

SHOUTcast DNAS (1.9 and 2.x): the W3C extended log, one line per listener that left, after the
directives `#Software:`, `#Version:` and `#Fields: c-ip c-dns date time cs-uri-stem c-status
cs(User-Agent) sc-bytes x-duration avgbandwidth`::

    203.0.113.7 203.0.113.7 2026-11-26 12:44:05 /stream?title=A%20Song 200 VLC%2F3.0 48000 3 128

DNAS writes the date and time in the server's *local* time without an offset; they are read in
the local time zone of the process parsing them (set `TZ` to the server's zone when importing
elsewhere). `cs-uri-stem` is always `/stream?title=<the song playing>`, not the listener's mount,
so the path is `/stream`. DNAS 2 writes the user agent and title percent-encoded per RFC 3986
(every byte outside `A-Z a-z 0-9 - . _ ~` as `%XX`, so a literal `+` never appears); DNAS 1
escapes too (`WinampMPEG%2F5%2E1`), and some logs write spaces as `+`. The user agent is
therefore decoded with `+` as a space and `%XX` as UTF-8, which reads all of them. The log has
no method or referrer: only listeners are logged, so the method is `GET` and the referrer empty.
"""

from __future__ import annotations

import calendar
import enum
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote_plus

from audimeter.observations import MAX_CONNECTED


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One finished connection as an access log line reports it."""

    ip: str
    end: int
    """Unix seconds of the disconnect (the line's time)."""
    duration: int
    """Seconds the connection lasted."""
    method: str
    path: str
    """The requested path (the mount), without the query string."""
    status: int
    sent: int
    """Bytes sent to the client."""
    referrer: str
    """"" when the line has `-`."""
    user_agent: str
    """"" when the line has `-`."""

    @property
    def start(self) -> int:
        return self.end - self.duration


class Heard(NamedTuple):
    """A listener line's fields, as `LogEntry` but a plain tuple (a `GET` answered `200`)."""

    ip: str
    end: int
    duration: int
    path: str
    sent: int
    referrer: str
    user_agent: str

    def entry(self) -> LogEntry:
        return LogEntry(
            self.ip,
            self.end,
            self.duration,
            "GET",
            self.path,
            200,
            self.sent,
            self.referrer,
            self.user_agent,
        )


LineParser = Callable[[str], LogEntry | None]


class Skip(enum.Enum):
    """Why a line is no listener session."""

    BAD = "bad"
    """Not a line of the log's format."""
    DIRECTIVE = "directive"
    """A W3C directive (#Fields: …)."""
    OTHER = "other"
    """Another request: admin and status pages, web-root files, sources, refused listeners."""


LineScanner = Callable[[str], LogEntry | Skip]
ListenerScanner = Callable[[str], Heard | Skip]

# -- Icecast ------------------------------------------------------------------------------------

# Digits are [0-9], not \d: int() would read other scripts' digits too ("٢٠٠" is 200).
_ICECAST = re.compile(
    r"(\S+) \S+ \S+ \[([0-9]{2}/[A-Za-z]{3}/[0-9]{4}):([0-9]{2}):([0-9]{2}):([0-9]{2}) "
    r'([+-][0-9]{4})\] "(\S+) (\S+)[^"]*" ([0-9]{3}) ([0-9]+) "([^"]*)" "([^"]*)" ([0-9]+)\s*'
)
# Builds that write a raw `"` inside the referrer or user agent: the user agent is then taken to
# run to the last `" ` before the seconds, the referrer to the `" "` before it.
_ICECAST_QUOTES = re.compile(_ICECAST.pattern.replace('"([^"]*)" "([^"]*)"', '"(.*?)" "(.*)"'))
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_midnights: dict[tuple[str, str], int | None] = {}


def _clf_midnight(day: str, zone: str) -> int | None:
    """Unix time of 00:00:00 on `day` ("26/Nov/2026") at UTC offset `zone` ("+0100")."""
    month = _MONTHS.get(day[3:6].title())
    if month is None:
        return None
    try:
        midnight = calendar.timegm((int(day[7:]), month, int(day[:2]), 0, 0, 0, 0, 0, 0))
    except ValueError:
        return None
    if not 1 <= int(day[:2]) <= calendar.monthrange(int(day[7:]), month)[1]:
        return None
    offset = (int(zone[1:3]) * 60 + int(zone[3:5])) * 60
    return midnight - offset if zone[0] == "+" else midnight + offset


def _icecast_end(day: str, hour: str, minute: str, second: str, zone: str) -> int | None:
    key = (day, zone)
    midnight = _midnights.get(key, -1)
    if midnight == -1:
        if len(_midnights) > 100_000:
            _midnights.clear()
        midnight = _midnights[key] = _clf_midnight(day, zone)
    if midnight is None or hour > "23" or minute > "59" or second > "60":
        return None
    return midnight + int(hour) * 3600 + int(minute) * 60 + int(second)


def _count(text: str) -> int | None:
    """A field of ASCII digits as a number, None for anything else or absurdly long."""
    return int(text) if len(text) <= 18 and text.isascii() and text.isdigit() else None


def _seconds(text: str) -> int | None:
    """A duration field; longer than any real connection is a corrupt line."""
    seconds = _count(text)
    return seconds if seconds is not None and seconds <= MAX_CONNECTED else None


# A field as Icecast 2.5 escapes it: printable ASCII except `"`, `\`, `!` and the backquote,
# and \xNN escapes.
_ESCAPED_FIELD = re.compile(r"(?:[ #-\[\]-_a-~]|\\x[0-9A-Fa-f]{2})*")
_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")


def _unescaped(field: str) -> str:
    """A referrer or user agent as the listener sent it, when Icecast 2.5 escaped it."""
    if "\\x" not in field or _ESCAPED_FIELD.fullmatch(field) is None:
        return field
    raw = _ESCAPE.sub(lambda escape: chr(int(escape[1], 16)), field).encode("latin-1")
    return raw.decode("utf-8", "replace")


def _icecast_entry(match: re.Match[str]) -> LogEntry | None:
    (ip, day, hour, minute, second, zone, method, path, status, sent, referrer, agent, stayed) = (
        match.groups()
    )
    end = _icecast_end(day, hour, minute, second, zone)
    duration, sent_bytes = _seconds(stayed), _count(sent)
    if end is None or duration is None or sent_bytes is None:
        return None
    if "?" in path:
        path = path.partition("?")[0]
    return LogEntry(
        ip,
        end,
        duration,
        method,
        path,
        int(status),
        sent_bytes,
        "" if referrer == "-" else _unescaped(referrer),
        "" if agent == "-" else _unescaped(agent),
    )


def parse_icecast_line(line: str) -> LogEntry | None:
    """An Icecast access log line, or None when the line is not one."""
    match = _ICECAST.fullmatch(line) or _ICECAST_QUOTES.fullmatch(line)
    return None if match is None else _icecast_entry(match)


_STAMP = re.compile(
    r"([0-9]{2}/[A-Za-z]{3}/[0-9]{4}):([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-][0-9]{4})"
)
_stamps: dict[str, int | None] = {}
_minute_ends: dict[str, int | None] = {}
_SECONDS = {f"{second:02d}": second for second in range(61)}
"""The seconds field of a valid time (60 for a leap second), by its text."""


# `icecast_span` of each line of a text at once: the three fields before the time have no
# spaces, the time has a fixed length, and the seconds are the last field. A line matches the
# first branch or else only the second, so there is one match per line (and an empty one after
# the last line end).
_SPANS = re.compile(
    r"^(?:[^ \n]* [^ \n]* [^ \n]* \[([^\n]{26})\][^\n]* ([0-9]{1,18})[^\S\n]*$)?[^\n]*$",
    re.MULTILINE,
)


def icecast_spans(text: str) -> list[tuple[str, str]]:
    """For each line of `text` (lines ending in a line feed), its time field and seconds as
    text, read at a fraction of the cost of parsing it, when the line may be a listener's:
    a line `parse_icecast_line` reads, whose time `stamp_end` reads, has these very values.
    ("", "") when it cannot be told this way (the line has another shape: parse it). One
    more row, empty, for the end of the text."""
    return _SPANS.findall(text)


# The usual listener line (a GET answered 200), its time as one field: a line this reads, with a
# time that `_STAMP` reads, is one `_ICECAST` reads into the very same fields.
_ICECAST_LISTENER = re.compile(
    r'(\S+) \S+ \S+ \[([^\]]{26})\] "GET (\S+)[^"]*" 200 ([0-9]{1,18}) "([^"]*)" "([^"]*)" '
    r"([0-9]{1,18})\s*"
)
_stream_paths: dict[str, bool] = {}
_new_heard = tuple.__new__


def stamp_end(stamp: str) -> int | None:
    """`_icecast_end` of a time field as one string ("26/Nov/2026:12:44:30 +0000"), remembered:
    the lines of one second share it, and a second is told from the time of its minute (a log
    has a new second every few lines)."""
    end = _stamps.get(stamp, -1)
    if end == -1:
        minute = stamp[:18] + "00" + stamp[20:]
        start = _minute_ends.get(minute, -1)
        if start == -1:
            match = _STAMP.fullmatch(minute)
            if len(_minute_ends) > 10_000:
                _minute_ends.clear()
            start = _minute_ends[minute] = None if match is None else _icecast_end(*match.groups())
        second = _SECONDS.get(stamp[18:20])
        if len(_stamps) > 100_000:
            _stamps.clear()
        end = _stamps[stamp] = None if start is None or second is None else start + second
    return end


def text_lines(text: str) -> list[str]:
    """The lines of a text of whole lines (each ends with a line feed), without their ends (nor
    the carriage returns before them)."""
    lines = text.split("\n")
    lines.pop()
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    return lines


def scan_icecast_listener(line: str) -> Heard | Skip:
    """`scan_icecast_line` as a plain tuple: importing builds millions of them."""
    fast = _ICECAST_LISTENER.fullmatch(line)
    if fast is not None:
        ip, stamp, path, sent, referrer, agent, stayed = fast.groups()
        end = _stamps.get(stamp, -1)
        if end == -1:
            end = stamp_end(stamp)
        if end is not None:
            if "?" in path:
                path = path.partition("?")[0]
            streams = _stream_paths.get(path)
            if streams is None:
                if len(_stream_paths) > 10_000:  # paths of odd requests: few are mounts
                    _stream_paths.clear()
                streams = _stream_paths[path] = _stream_path(path)
            duration, sent_bytes = int(stayed), int(sent)
            if not streams or not (duration or sent_bytes):
                return Skip.OTHER
            if duration > MAX_CONNECTED:
                return Skip.BAD
            if "\\x" in referrer or "\\x" in agent:  # `_unescaped`'s own test: few are escaped
                referrer, agent = _unescaped(referrer), _unescaped(agent)
            return _new_heard(
                Heard,
                (
                    ip,
                    end,
                    duration,
                    path,
                    sent_bytes,
                    "" if referrer == "-" else referrer,
                    "" if agent == "-" else agent,
                ),
            )
    return _scan_icecast_slowly(line)


def _scan_icecast_slowly(line: str) -> Heard | Skip:
    match = _ICECAST.fullmatch(line) or _ICECAST_QUOTES.fullmatch(line)
    if match is None:
        return Skip.BAD
    (ip, day, hour, minute, second, zone, method, path, status, sent, referrer, agent, stayed) = (
        match.groups()
    )
    end = _icecast_end(day, hour, minute, second, zone)
    if end is None:
        return Skip.BAD
    if "?" in path:
        path = path.partition("?")[0]
    if status != "200" or method != "GET" or not _stream_path(path):
        return Skip.OTHER
    duration, sent_bytes = _seconds(stayed), _count(sent)
    if duration is None or sent_bytes is None:
        return Skip.BAD
    if not (duration or sent_bytes):
        return Skip.OTHER
    return Heard(
        ip,
        end,
        duration,
        path,
        sent_bytes,
        "" if referrer == "-" else _unescaped(referrer),
        "" if agent == "-" else _unescaped(agent),
    )


def scan_icecast_line(line: str) -> LogEntry | Skip:
    """`parse_icecast_line` then `is_listener`, in one go and faster for lines that are not
    listeners: the entry of a listener line, else why the line does not count."""
    heard = scan_icecast_listener(line)
    return heard if isinstance(heard, Skip) else heard.entry()


# -- SHOUTcast W3C ------------------------------------------------------------------------------

_W3C_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_W3C_TIME = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})")


def is_directive(line: str) -> bool:
    """A W3C directive (`#Software:`, `#Version:`, `#Fields:`, …): no connection, not bad either."""
    return line.startswith("#")


@lru_cache(maxsize=4096)
def _local_hour(date: str, hour: int, zone: tuple[str, str]) -> int | None:
    """Unix time of `date` ("2026-11-26") at `hour`:00:00 local time; `zone` keys the cache."""
    try:
        year, month, day = int(date[:4]), int(date[5:7]), int(date[8:10])
        if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
            return None
        return int(time.mktime((year, month, day, hour, 0, 0, 0, 0, -1)))
    except (ValueError, OverflowError):
        return None


def _decode(field: str) -> str:
    if "%" in field or "+" in field:
        return unquote_plus(field, errors="replace")
    return field


def parse_shoutcast_line(line: str) -> LogEntry | None:
    """A line of SHOUTcast's W3C log; None for directives (see `is_directive`) and bad lines."""
    parts = line.split()
    if len(parts) < 10 or is_directive(line):
        return None
    ip, _dns, date, clock, uri, status = parts[:6]
    sent, duration, _bitrate = parts[-3:]
    agent = parts[6] if len(parts) == 10 else " ".join(parts[6:-3])
    hms = _W3C_TIME.fullmatch(clock)
    seconds, sent_bytes, code = _seconds(duration), _count(sent), _count(status)
    if (
        hms is None
        or _W3C_DATE.fullmatch(date) is None
        or seconds is None
        or sent_bytes is None
        or code is None
        or not uri.startswith("/")
    ):
        return None
    hour, minute, second = (int(x) for x in hms.groups())
    if hour > 23 or minute > 59 or second > 60:
        return None
    base = _local_hour(date, hour, time.tzname)
    if base is None:
        return None
    return LogEntry(
        ip,
        base + minute * 60 + second,
        seconds,
        "GET",
        uri.partition("?")[0],
        code,
        sent_bytes,
        "",
        "" if agent == "-" else _decode(agent),
    )


# -- which lines are listeners ------------------------------------------------------------------

_SERVER_PATHS = frozenset(
    {
        "/",
        "/admin",
        "/admin.cgi",
        "/server_version",
        "/stats",
        "/statistics",
        "/currentsong",
        "/nextsong",
        "/played",
        "/streamart",
        "/playingart",
    }
)
"""Pages of the servers themselves (Icecast's web root, DNAS's status and admin pages)."""
_SERVER_PREFIXES = ("/admin/", "/status")
"""Icecast's admin interface; its status pages (/status.xsl, /status-json.xsl, /status2.xsl…)."""
_SERVER_SUFFIXES = (
    ".xsl",
    ".css",
    ".js",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".ico",
    ".svg",
    ".html",
    ".htm",
    ".txt",
    ".xml",
    ".json",
    ".m3u",
    ".m3u8",
    ".pls",
    ".xspf",
    ".vclt",
)
"""Web-root files and the playlist files Icecast derives from a mount (/live.mp3.m3u)."""


def _stream_path(path: str) -> bool:
    return not (
        path in _SERVER_PATHS
        or path.startswith(_SERVER_PREFIXES)
        or path.endswith(_SERVER_SUFFIXES)
    )


def is_listener(entry: LogEntry) -> bool:
    """Whether a line is a finished listener connection.

    The rule, from real Icecast 2.4.4 logs (tests/fixtures/icecast-2.4.4/access.log.*):
    a `GET` (a source client is `PUT` or `SOURCE`) answered `200` (refused listeners are 401,
    403 or 404, even after waiting 16 s for an authentication backend), of a path that is not
    one of the server's own pages (admin interface, status pages, stylesheets, web-root files,
    playlists), that lasted at least a second or received bytes. The status and admin requests
    in those logs all last 0 s but receive their page, hence the path rule.
    """
    return (
        entry.status == 200
        and entry.method == "GET"
        and (entry.duration > 0 or entry.sent > 0)
        and _stream_path(entry.path)
    )


def scan_shoutcast_line(line: str) -> LogEntry | Skip:
    """`parse_shoutcast_line` then `is_listener`: the entry of a listener line, else why not."""
    entry = parse_shoutcast_line(line)
    if entry is None:
        return Skip.DIRECTIVE if is_directive(line) else Skip.BAD
    return entry if is_listener(entry) else Skip.OTHER


def parser_for(kind: str) -> LineParser:
    """The line parser for a source kind: Icecast's access log or SHOUTcast's W3C log."""
    if kind == "icecast":
        return parse_icecast_line
    if kind in ("shoutcast1", "shoutcast2"):
        return parse_shoutcast_line
    raise ValueError(f"no access log format for source kind {kind!r}")


def scanner_for(kind: str) -> LineScanner:
    """`parser_for` and `is_listener` in one: the listener entry of a line, or why it is none."""
    if kind == "icecast":
        return scan_icecast_line
    if kind in ("shoutcast1", "shoutcast2"):
        return scan_shoutcast_line
    raise ValueError(f"no access log format for source kind {kind!r}")


def _scan_shoutcast_listener(line: str) -> Heard | Skip:
    entry = scan_shoutcast_line(line)
    if isinstance(entry, Skip):
        return entry
    return Heard(
        entry.ip,
        entry.end,
        entry.duration,
        entry.path,
        entry.sent,
        entry.referrer,
        entry.user_agent,
    )


def spans_for(kind: str) -> Callable[[str], list[tuple[str, str]]] | None:
    """`icecast_spans` for Icecast logs; W3C lines are only ever parsed whole."""
    return icecast_spans if kind == "icecast" else None


def listener_scanner_for(kind: str) -> ListenerScanner:
    """`scanner_for`, giving a listener line's fields as a `Heard` tuple."""
    if kind == "icecast":
        return scan_icecast_listener
    if kind in ("shoutcast1", "shoutcast2"):
        return _scan_shoutcast_listener
    raise ValueError(f"no access log format for source kind {kind!r}")
