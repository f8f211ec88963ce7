"""Real server captures kept with the tests: tests/fixtures (SOURCES.md says where each came
from), and readers for the raw HTTP answers and URL-authentication request logs among them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from audimeter.observations import ListenerLeft, ListenerList, MountPolled, Observation
from audimeter.sources.accesslog import LogEntry, is_listener, parse_icecast_line
from audimeter.sources.icecast import parse_listclients

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ICECAST_24 = FIXTURES / "icecast-2.4.4"
ICECAST_25 = FIXTURES / "icecast-2.5.0-rc2"
ICECAST_KH = FIXTURES / "icecast-kh22"
SHOUTCAST = FIXTURES / "shoutcast"


@dataclass(frozen=True)
class Answer:
    """A captured HTTP answer."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_answer(path: Path) -> Answer:
    """A raw HTTP answer as captured (status line, headers, blank line, body)."""
    raw = path.read_bytes()
    head, blank, body = raw.partition(b"\r\n\r\n")
    if not blank:  # the 2.5 captures end their lines with \n only
        head, _, body = raw.partition(b"\n\n")
    status_line, *lines = head.decode("latin-1").splitlines()
    headers = [(name, value.strip()) for name, _, value in (h.partition(":") for h in lines)]
    return Answer(int(status_line.split()[1]), headers, body)


@dataclass(frozen=True)
class Request:
    """A captured URL-authentication request."""

    stamp: str
    """When it came: ISO 8601 (2.4.4 capture) or HH:MM:SS UTC (KH and 2.5 captures)."""
    request_line: str
    body: str


def url_auth_requests(path: Path) -> list[Request]:
    """Every request of a url_auth_requests.log, in order.

    The 2.4.4 capture starts each with `=== <time>  (mode=…)` and the request line; the KH and
    2.5 captures with `### HH:MM:SS <request line>`. Lines `### MARK …` name a scenario.
    """
    requests = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("=== "):
            stamp, request_line = line.split()[1], lines[index + 1]
        elif line.startswith("### ") and not line.startswith("### MARK"):
            stamp, request_line = line[4:].split(" ", 1)
        else:
            continue
        blank = lines.index("", index)
        requests.append(Request(stamp, request_line, lines[blank + 1]))
    return requests


LISTING_TIMES = {
    # /live.mp3 listing -> when it was taken, as its listeners' Connected and log lines tell
    ICECAST_KH: {
        "admin_listclients_live.xml": "07:09:18",
        "admin_listclients_quote_utf8_query.xml": "07:12:27",
        "admin_listclients_latin1_ua.xml": "07:19:50",
    },
    ICECAST_25: {
        "admin_listclients_live.xml": "07:14:24",
        "admin_listclients_quote_utf8_query.xml": "07:16:35",
        "admin_listclients_latin1_ua.xml": "07:19:50",
    },
}


def captured_at(clock: str) -> int:
    """Unix time of HH:MM:SS UTC on the day of the KH and 2.5 captures."""
    return int(datetime.fromisoformat(f"2026-12-03T{clock}+00:00").timestamp())


def access_log_entries(folder: Path) -> list[LogEntry]:
    """The listener lines of a capture's access.log, read as the tailer reads them."""
    lines = (
        raw.decode("utf-8", "replace") for raw in (folder / "access.log").read_bytes().splitlines()
    )
    entries = (parse_icecast_line(line) for line in lines)
    return [entry for entry in entries if entry is not None and is_listener(entry)]


def live_observations(folder: Path, source: str) -> list[Observation]:
    """What audimeter with `access_log` saw of /live.mp3 on the KH or 2.5 server, in time order:
    the captured listings as polls, the log lines as exact ends, then a poll finding nobody."""
    timed: list[tuple[int, int, Observation]] = []
    for name, clock in LISTING_TIMES[folder].items():
        mount, table = parse_listclients((folder / name).read_bytes())
        timed.append(
            (captured_at(clock), 0, MountPolled(source, captured_at(clock), "i", mount, table))
        )
    for entry in access_log_entries(folder):
        if entry.path == "/live.mp3":
            notice = ListenerLeft(
                source, entry.end, entry.path, entry.duration, "", entry.ip, entry.user_agent
            )
            timed.append((entry.end, 1, notice))
    last = max(at for at, _, _ in timed) + 5
    timed.append((last, 0, MountPolled(source, last, "i", "/live.mp3", ListenerList([]))))
    return [observation for _, _, observation in sorted(timed, key=lambda t: t[:2])]
