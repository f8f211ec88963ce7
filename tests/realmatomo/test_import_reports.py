"""`audimeter import` of a few days of an Icecast 2.4 access log, read back from the real Matomo.

The log is generated: a few hundred listener sessions over three past days (so every `cdt` is
older than 24 hours and needs the token), short ones, ones longer than the kit's
`visit_standard_length` of 60 s, ones of hours, a NAT pair (one address and player, at the same
time), a listener who returns another day, a connection of 0 seconds that received data, plus
status, admin and source lines and a malformed one. Each session must be one Matomo visit with
its address, visitor, start and length; after `core:archive`, the reports people read
(VisitsSummary and the Events report of the listening category) must sum to what the sessions say.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audimeter.events import Session
from audimeter.matomo.mapping import EVENT_CATEGORY, visitor_id
from audimeter.store import Store
from tests.support.matomolab import MatomoLab

STREAM = "http://radio.example.org:8000"
MOUNT = "/live.mp3"
PLAYERS = (
    "VLC/3.0.20 LibVLC/3.0.20",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "iTunes/12.12 (Windows; Microsoft Windows 10 x64) AppleWebKit/7613.2007",
)
DAYS = 3
TODAY = int(time.time()) // 86400


@dataclass(frozen=True)
class Played:
    ip: str
    agent: str
    start: int
    seconds: int
    slot: int = 0

    @property
    def end(self) -> int:
        return self.start + self.seconds

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%d")


def clf(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def line(ip: str, end: int, request: str, status: int, sent: int, agent: str, seconds: int) -> str:
    return f'{ip} - - [{clf(end)}] "{request} HTTP/1.1" {status} {sent} "-" "{agent}" {seconds}'


def sessions() -> list[Played]:
    """Listeners of three past days, between 06:00 and 20:00 UTC (no visit crosses midnight)."""
    rng = random.Random(8)
    played: list[Played] = []
    for day in range(DAYS):
        morning = (TODAY - DAYS - 1 + day) * 86400 + 6 * 3600
        for n in range(90):
            kind = n % 10
            if kind < 5:
                seconds = rng.randint(1, 59)  # shorter than a Matomo visit's 60 s
            elif kind < 9:
                seconds = rng.randint(61, 1500)
            else:
                seconds = rng.randint(3600, 9000) if n % 30 == 9 else rng.randint(1600, 3000)
            address = f"198.51.{100 + day}.{n + 1}"
            played.append(
                Played(
                    address, PLAYERS[n % len(PLAYERS)], morning + rng.randint(0, 12 * 3600), seconds
                )
            )
    base = (TODAY - 3) * 86400 + 15 * 3600
    played += [
        # a NAT pair: one address, one player, at the same time: two visitors
        Played("203.0.113.50", PLAYERS[2], base, 1200),
        Played("203.0.113.50", PLAYERS[2], base + 300, 400, slot=1),
        # the first returns the next day: the same visitor
        Played("203.0.113.50", PLAYERS[2], base + 86400 - 3600, 90),
        # connected for less than a second, but received data
        Played("203.0.113.60", PLAYERS[0], base + 60, 0),
        Played("2001:db8::77", PLAYERS[1], base + 120, 300),
    ]
    return played


def write_log(path: Path, played: list[Played]) -> None:
    """The lines in the order Icecast writes them: when each connection ends."""
    timed = [
        (
            p.end,
            line(p.ip, p.end, f"GET {MOUNT}", 200, 16_000 * p.seconds + 8_000, p.agent, p.seconds),
        )
        for p in played
    ]
    first = min(p.start for p in played)
    last = max(p.end for p in played)
    timed += [
        (
            first,
            line(
                "127.0.0.1",
                first,
                "GET /admin/listclients?mount=/live.mp3",
                200,
                798,
                "audimeter/0.1",
                0,
            ),
        ),
        (
            first + 1,
            line("203.0.113.9", first + 1, "GET /status-json.xsl", 200, 1860, PLAYERS[1], 0),
        ),
        (first + 2, line("203.0.113.9", first + 2, f"GET {MOUNT}", 401, 328, PLAYERS[0], 0)),
        (last, line("10.0.0.5", last, f"PUT {MOUNT}", 200, 19, "Liquidsoap/2.2.2", last - first)),
        (first + 3, '198.51.100.1 - - [not a date] "GET /live.mp3 HTTP/1.1" 200'),
    ]
    timed.sort(key=lambda pair: pair[0])
    path.write_text("".join(text + "\n" for _, text in timed))


# As long as the kit's 60 s visit length and the poll interval allow: every keep-alive is one more
# tracking request for Matomo to store (about 4,900 in all here; 7,100 at 30 s).
KEEPALIVE = 45


def write_config(tmp_path: Path, lab: MatomoLab) -> Path:
    path = tmp_path / "audimeter.toml"
    path.write_text(
        lab.config_head(tmp_path / "state.db", KEEPALIVE)
        + f"""
[[sources]]
name = "main"
kind = "icecast"
url = "{STREAM}"
password = "hackme"
poll_interval = 10
"""
    )
    path.chmod(0o600)
    return path


def audimeter_import(config: Path, log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "audimeter",
            "import",
            "--config",
            str(config),
            "--source",
            "main",
            str(log),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def expected_length(p: Played) -> int:
    """What Matomo shows as the visit's length: last action - first action + 1, where the end
    event is dated one second before the end, but never before the start."""
    return max(p.start, p.end - 1) - p.start + 1


def test_history_import_shows_in_visits_and_reports(real_matomo: MatomoLab, tmp_path: Path) -> None:
    played = sessions()
    assert len(played) >= 250
    assert all(p.start < time.time() - 86400 for p in played)
    config = write_config(tmp_path, real_matomo)
    log = tmp_path / "access.log.1"
    write_log(log, played)

    result = audimeter_import(config, log)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert f"{len(played)} listener sessions, 0 filtered, 0 too short, 1 bad, 4 not listeners" in (
        result.stdout
    )

    store = Store.open(tmp_path / "state.db")
    try:
        salt = store.salt()
    finally:
        store.close()
    days = sorted({p.day for p in played})
    visits = real_matomo.visits(date=f"{days[0]},{days[-1]}")
    by_start: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for visit in visits:
        by_start[(visit["visitIp"], int(visit["firstActionTimestamp"]))].append(visit)
    assert len(visits) == len(played)
    for p in played:
        found = by_start[(p.ip, p.start)]
        assert len(found) == 1, p
        visit = found[0]
        session = Session("main", "", MOUNT, "", p.ip, p.agent, "", p.start, p.slot)
        assert visit["visitorId"] == visitor_id(salt, session), p
        assert int(visit["visitDuration"]) == expected_length(p), (p, visit["visitDuration"])
        details = visit["actionDetails"]
        assert details[0]["url"] == STREAM + MOUNT
        assert details[-1]["eventAction"] == "end"
        assert sum(float(a.get("eventValue") or 0) for a in details[1:]) == p.seconds
    nat = [by_start[(p.ip, p.start)][0]["visitorId"] for p in played if p.ip == "203.0.113.50"]
    assert nat[0] != nat[1]
    assert nat[2] == nat[0]

    real_matomo.archive()
    for day in days:
        today = [p for p in played if p.day == day]
        summary = real_matomo.api(
            "VisitsSummary.get", idSite=real_matomo.site_id, period="day", date=day
        )
        assert int(summary["nb_visits"]) == len(today), day
        assert int(summary["sum_visit_length"]) == sum(expected_length(p) for p in today), day
        categories = real_matomo.api(
            "Events.getCategory", idSite=real_matomo.site_id, period="day", date=day
        )
        listening = [row for row in categories if row["label"] == EVENT_CATEGORY]
        assert len(listening) == 1, categories
        assert float(listening[0]["sum_event_value"]) == sum(p.seconds for p in today), day

    # The same file again: recognised, nothing sent, Matomo unchanged.
    again = audimeter_import(config, log)
    assert again.returncode == 0, again.stderr
    assert "already imported" in again.stdout
    assert "delivered" not in again.stdout
    assert len(real_matomo.visits(date=f"{days[0]},{days[-1]}")) == len(played)
