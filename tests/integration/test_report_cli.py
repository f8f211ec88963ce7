"""`audimeter report` on a state file with a history of sessions, as an operator runs it."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.history import write_config, write_history, write_plays

DAY = 86400


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


# (source, mount, site, visitor, start, seconds, player, country); period 2024-05-01 and
# 2024-05-02, UTC.
HISTORY = [
    ("main", "/live", 1, "a", at("2024-05-01T23:50:00"), 1200, "VLC", "DE"),  # crosses midnight
    ("main", "/live", 1, "a", at("2024-05-02T08:00:00"), 3600, "VLC", "DE"),  # returns
    ("main", "/talk", 2, "b", at("2024-05-02T08:30:00"), 30, "Winamp", ""),  # short
    ("main", "/live", 1, "c", at("2024-04-30T23:00:00"), 7200, "Chrome", "FR"),  # crosses start
    ("main", "/live", 1, "d", at("2024-05-03T00:00:00"), 600, "VLC", "US"),  # after the period
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    state = tmp_path / "state.db"
    write_history(
        state,
        [
            (src, m, site, v, s, s + n, n, "gone", "VLC/3.0.20", "", player, country)
            for src, m, site, v, s, n, player, country in HISTORY
        ],
    )
    return write_config(tmp_path, state)


def report(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audimeter", "report", "--config", str(config),
         "--from", "2024-05-01", "--to", "2024-05-02", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_json_by_day_is_exact(config: Path) -> None:
    result = report(config, "--by", "day", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    document = json.loads(result.stdout)
    buckets = dict.fromkeys(("1-5min", "5-10min", "10-30min", "30-60min", "1-2h", "2h+"), 0)
    assert {k: document[k] for k in ("from", "to", "timezone", "min_session")} == {
        "from": "2024-05-01", "to": "2024-05-02", "timezone": "UTC", "min_session": 60,
    }  # fmt: skip
    assert document["totals"] == {
        "sessions": 2,
        "active_sessions": 3,
        "seconds": 8400,
        "tlh": 8400 / 3600,
        "aas": 8400 / (2 * DAY),
        "atsl": 2800.0,
        "cume": 2,
        "tsl": 4200.0,
        # c in the four quarter hours of 00:00-01:00, a in 23:45 and 00:00 (600 s each), a in
        # the four of 08:00-09:00: ten listener-quarter-hours in 192.
        "aqh": 10 / 192,
        "peak": 1,
        "peak_at": "2024-05-01T00:00:00+00:00",
        "short_sessions": 1,
        "durations": {**buckets, "10-30min": 1, "1-2h": 1},
    }
    first, second = document["rows"]
    assert first["key"] == "2024-05-01"
    assert (first["sessions"], first["active_sessions"], first["seconds"], first["cume"]) == (
        1, 2, 4200, 2,
    )  # fmt: skip
    assert (first["aqh"], first["short_sessions"]) == (5 / 96, 0)
    assert second["key"] == "2024-05-02"
    assert (second["sessions"], second["active_sessions"], second["seconds"], second["cume"]) == (
        1, 2, 4200, 1,
    )  # fmt: skip
    assert (second["peak"], second["peak_at"], second["short_sessions"]) == (
        1, "2024-05-02T00:00:00+00:00", 1,
    )  # fmt: skip


def test_by_value_and_filters(config: Path) -> None:
    by_mount = json.loads(report(config, "--by", "mount", "--format", "json").stdout)
    assert [(r["key"], r["sessions"], r["short_sessions"]) for r in by_mount["rows"]] == [
        ("/live", 2, 0),
        ("/talk", 0, 1),
    ]
    by_player = json.loads(report(config, "--by", "player", "--format", "json").stdout)
    assert [
        (r["key"], r["sessions"], r["cume"], r["short_sessions"]) for r in by_player["rows"]
    ] == [
        ("Chrome", 0, 1, 0),
        ("VLC", 2, 1, 0),
        ("Winamp", 0, 0, 1),
    ]
    by_country = json.loads(report(config, "--by", "country", "--format", "json").stdout)
    assert [(r["key"], r["seconds"], r["short_sessions"]) for r in by_country["rows"]] == [
        ("DE", 4800, 0),
        ("FR", 3600, 0),
        ("unknown", 0, 1),
    ]
    by_site = json.loads(report(config, "--by", "site", "--format", "json").stdout)
    assert [r["key"] for r in by_site["rows"]] == [1, 2]
    talk = json.loads(report(config, "--mount", "/talk", "--format", "json").stdout)
    assert (talk["totals"]["short_sessions"], talk["totals"]["cume"], talk["rows"]) == (1, 0, [])


def test_time_zone_moves_the_period(config: Path) -> None:
    # In New York (UTC-4) the period starts at 04:00 UTC: c's session is over by then.
    document = json.loads(
        report(config, "--timezone", "America/New_York", "--format", "json").stdout
    )
    assert document["timezone"] == "America/New_York"
    assert document["totals"]["active_sessions"] == 3  # a twice, and d (20:00 on May 2 there)
    assert document["totals"]["peak_at"] == "2024-05-01T19:50:00-04:00"


def test_csv_and_table(config: Path) -> None:
    rows = list(
        csv.DictReader(io.StringIO(report(config, "--by", "day", "--format", "csv").stdout))
    )
    assert [(r["by"], r["key"], r["seconds"]) for r in rows] == [
        ("total", "", "8400"), ("day", "2024-05-01", "4200"), ("day", "2024-05-02", "4200"),
    ]  # fmt: skip
    assert rows[0]["durations_10-30min"] == "1"
    assert rows[0]["peak_at"] == "2024-05-01T00:00:00+00:00"
    by_country = csv.DictReader(
        io.StringIO(report(config, "--by", "country", "--format", "csv").stdout)
    )
    assert [(r["by"], r["key"], r["seconds"]) for r in by_country] == [
        ("total", "", "8400"), ("country", "DE", "4800"), ("country", "FR", "3600"),
        ("country", "unknown", "0"),
    ]  # fmt: skip
    by_player = report(config, "--by", "player").stdout
    keys = [line.split()[0] for line in by_player.splitlines() if line.split()]
    assert [k for k in keys if k in ("Chrome", "VLC", "Winamp")][:3] == ["Chrome", "VLC", "Winamp"]
    table = report(config, "--by", "day").stdout
    total = next(line for line in table.splitlines() if line.strip().startswith("total"))
    assert total.split() == [
        "total", "2", "3", "2.3", "h", "0.05", "0:46:40", "2", "1:10:00", "0.05", "1",
        "2024-05-01", "00:00", "1",
    ]  # fmt: skip


def test_output_file_and_html(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = report(config, "--by", "mount", "--format", "html", "--output", str(out))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 3
    assert "/talk" in page
    by_country = tmp_path / "country.html"
    report(config, "--by", "country", "--format", "html", "--output", str(by_country))
    assert all(f">{key}<" in by_country.read_text() for key in ("DE", "FR", "unknown"))
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page


# (mount, title, start, end) on source main: /live's plays back to back around a's return at
# 08:00, one still on air (not counted), one before the period (not counted).
PLAYS = [
    ("/live", "Artist - Morning Song", at("2024-05-02T07:58:00"), at("2024-05-02T08:01:00")),
    ("/live", "News", at("2024-05-02T08:01:00"), at("2024-05-02T08:05:00")),
    ("/live", "Artist - Morning Song", at("2024-05-02T08:05:00"), at("2024-05-02T08:08:00")),
    ("/talk", "News", at("2024-05-02T08:29:00"), at("2024-05-02T08:31:00")),
    ("/live", "Before", at("2024-04-30T23:30:00"), at("2024-04-30T23:40:00")),
]


def test_by_title(config: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    write_plays(state, [("main", m, title, s, e) for m, title, s, e in PLAYS])
    write_plays(state, [("main", "/live", "On Air", at("2024-05-02T08:08:00"), None)])
    result = report(config, "--by", "title", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["totals"] == json.loads(report(config, "--format", "json").stdout)["totals"]
    rows = {row.pop("key"): row for row in document["rows"]}
    # a listens from 08:00: 60 s of the first play, all of News on /live and the second play;
    # c (till 01:00 on 05-01) and b (30 s, too short) never hear a title.
    assert rows == {
        "Artist - Morning Song": {
            "plays": 2,
            "airtime": 360,
            "seconds": 240,
            "tlh": 240 / 3600,
            "aas": 240 / 360,
            "sessions": 1,
            "listeners_at_start": 1,
            "avg_listeners_at_start": 0.5,
            "tune_outs": 0,
            "tune_out_rate": 0.0,
        },
        "News": {
            "plays": 2,
            "airtime": 360,
            "seconds": 240,
            "tlh": 240 / 3600,
            "aas": 240 / 360,
            "sessions": 0,
            "listeners_at_start": 1,
            "avg_listeners_at_start": 0.5,
            "tune_outs": 0,
            "tune_out_rate": 0.0,
        },
    }
    assert [row["key"] for row in json.loads(result.stdout)["rows"]] == [
        "Artist - Morning Song",
        "News",
    ]
    only_talk = json.loads(
        report(config, "--by", "title", "--mount", "/talk", "--format", "json").stdout
    )
    assert [(row["key"], row["airtime"], row["seconds"]) for row in only_talk["rows"]] == [
        ("News", 120, 0)
    ]
    table = report(config, "--by", "title")
    assert table.returncode == 0, table.stderr
    assert "Titles on air" in table.stdout
    assert "Artist - Morning Song" in table.stdout
    assert "0:06:00" in table.stdout  # airtime
    lines = list(csv.reader(io.StringIO(report(config, "--by", "title", "--format", "csv").stdout)))
    assert lines[0] == ["by", "key", "plays", "airtime", "seconds", "tlh", "aas", "sessions",
                        "listeners_at_start", "avg_listeners_at_start", "tune_outs",
                        "tune_out_rate"]  # fmt: skip
    assert [line[:4] for line in lines[1:]] == [
        ["title", "Artist - Morning Song", "2", "360"],
        ["title", "News", "2", "360"],
    ]
    out = tmp_path / "titles.html"
    page = report(config, "--by", "title", "--format", "html", "--output", str(out))
    assert page.returncode == 0, page.stderr
    html = out.read_text()
    assert "<th>tune-out rate</th>" in html
    assert "<td>Artist - Morning Song</td>" in html


def test_by_title_on_a_state_file_without_titles(config: Path) -> None:
    result = report(config, "--by", "title")
    assert result.returncode == 1
    assert "has no titles on air recorded yet" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timezone", "Mars/Olympus"], "report: --timezone: 'Mars/Olympus' is not a time zone"),
        (["--to", "2024-04-01"], "report: --to 2024-04-01 is before --from 2024-05-01"),
        (["--source", "other"], "report: --source 'other' is not a source of"),
    ],
)
def test_usage_errors_are_one_line(config: Path, args: list[str], message: str) -> None:
    result = report(config, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_state_file_problems_are_one_line(config: Path, tmp_path: Path) -> None:
    text = config.read_text()
    config.write_text(text.replace("state.db", "missing.db"))
    missing = report(config)
    assert missing.returncode == 1
    assert (
        missing.stderr == f"audimeter: there is no state file {tmp_path / 'missing.db'} "
        "(check [state] path)\n"
    )
    sqlite3.connect(tmp_path / "old.db").execute("CREATE TABLE meta (key TEXT)").connection.close()
    config.write_text(text.replace("state.db", "old.db"))
    old = report(config)
    assert old.returncode == 1
    assert "has no history of sessions yet" in old.stderr
    assert old.stderr.count("\n") == 1


def test_reads_while_another_process_writes(config: Path, tmp_path: Path) -> None:
    writer = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO history VALUES ('main', '/live', 1, 'e', ?, ?, 600, 'gone', '', '', '', '')",
        (at("2024-05-01T12:00:00"), at("2024-05-01T12:10:00")),
    )
    during = report(config, "--format", "json")
    writer.execute("COMMIT")
    after = report(config, "--format", "json")
    writer.close()
    assert during.returncode == 0, during.stderr
    assert json.loads(during.stdout)["totals"]["sessions"] == 2
    assert json.loads(after.stdout)["totals"]["sessions"] == 3


def test_unwritable_output_is_one_line(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "report.html"
    result = report(config, "--format", "html", "--output", str(target))
    assert result.returncode == 1
    assert result.stderr == f"audimeter: cannot write {target}: No such file or directory\n"
