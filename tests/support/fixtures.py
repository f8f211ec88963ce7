"""Real server captures kept with the tests: tests/fixtures (SOURCES.md says where each came
from), and readers for the raw HTTP answers and URL-authentication request logs among them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
