"""The player audimeter records in the history is the one Matomo shows for the same visit.

An access log with one listener per user agent is imported into the real Matomo; each visit's
`browserName` (what the "Browsers" report and the visitor log show) must be the `player` of the
same session in the history, matched by visitor id.

Matomo 5.0.2 bundles DeviceDetector 6.2.1; the `device-detector` package follows later rules.
Where those rules changed, the names differ: `DRIFT` holds the differences known, so that a change
on either side shows here.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.realmatomo.test_import_reports import audimeter_import, line, write_config
from tests.support.matomolab import MatomoLab

AGENTS = {
    "VLC/3.0.20 LibVLC/3.0.20": "VLC",
    "WinampMPEG/5.66, Ultravox/2.1": "Winamp",
    "iTunes/12.12.9 (Windows; Microsoft Windows 10 x64) AppleWebKit/7613.2007.1014.14": "iTunes",
    "foobar2000/1.6.16": "Foobar2000",
    "NSPlayer/12.00.19041.3636 WMFSDK/12.00.19041.3636": "Windows Media Player",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0": "Firefox",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1": "Mobile Safari",
    "Lavf/58.76.100": "ffmpeg",
    "ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2": "Android Browser",
    "SomeStationPlayer/2.0": "Unknown",
    "": "Unknown",
}
APPLE_CORE_MEDIA = "AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X; en_us)"
DRIFT = {
    # DeviceDetector 6.2.1 took iOS's media framework for the browser of an iPhone.
    APPLE_CORE_MEDIA: ("Mobile Safari", "Apple Core Media"),
}


def test_the_history_names_players_as_matomo_does(real_matomo: MatomoLab, tmp_path: Path) -> None:
    start = (int(time.time()) // 86400 - 2) * 86400 + 9 * 3600
    log = tmp_path / "access.log"
    log.write_text(
        "".join(
            line(f"198.51.100.{n + 1}", start + 60 * n + 300, "GET /live.mp3", 200, 800_000,
                 agent or "-", 300) + "\n"
            for n, agent in enumerate([*AGENTS, *DRIFT])
        )
    )  # fmt: skip
    result = audimeter_import(write_config(tmp_path, real_matomo), log)
    assert result.returncode == 0, result.stdout + result.stderr
    history = dict(
        sqlite3.connect(tmp_path / "state.db").execute("SELECT visitor_id, player FROM history")
    )
    agents = dict(
        sqlite3.connect(tmp_path / "state.db").execute("SELECT user_agent, visitor_id FROM history")
    )
    day = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d")
    visits = real_matomo.visits(date=f"{day},{day}")
    shown = {visit["visitorId"]: visit["browserName"] for visit in visits}
    assert len(shown) == len(AGENTS) + len(DRIFT), result.stdout
    for agent, (matomo, ours) in DRIFT.items():
        assert (shown.pop(agents[agent]), history.pop(agents[agent])) == (matomo, ours)
    assert history == shown
    assert sorted(history.values()) == sorted(AGENTS.values())
