"""What `audimeter import` shows, journals and puts into the history for a mixed log stays as it
was.

The digests were taken from the import as it was before its parsing and delivery were made
faster (the history's, once it kept players and countries); a change of any journaled field,
visitor id, history row, count or of the order of a visitor's events shows up here. The order
among visitors is free (Matomo keeps them apart), and so is the history's."""

from __future__ import annotations

import hashlib
import io
import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from audimeter.config import parse_config
from audimeter.importer import run_import
from audimeter.store import Store

T0 = 1_795_046_400
AGENTS = (
    "VLC/3.0.20 LibVLC/3.0.20",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "AppleCoreMedia/1.0.0.21B101 (iPhone; U; CPU OS 17_1_2 like Mac OS X; de_de)",
    "Winamp \\x22beta\\x22 (test\\x5cbuild) \\xc3\\x9cn\\xc3\\xaf",
    "Quote .q. back.slash ..n..",
    "-",
    "Icecast 2.4.4",  # a relay: filtered
    "Googlebot/2.1 (+http://www.google.com/bot.html)",  # a bot: filtered
)
REFERRERS = ("-", "https://radio.example.org/player", "https://x.example/?a=1&b=%20")
PATHS = ("/live.mp3", "/live.aac", "/talk.mp3?token=abc", "/live.mp3.m3u", "/status-json.xsl")


def clf(t: int, zone: str = "+0000") -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S ") + zone


def mixed_log(count: int = 3000, seed: int = 11) -> str:
    """Listener lines of look-alikes, returning listeners and long sessions, with every other
    kind of line a log holds: admin and status requests, refused ones, sources, odd fields and
    malformed lines."""
    rng = random.Random(seed)
    lines = []
    end = T0
    for _ in range(count):
        end += rng.randrange(0, 40)
        ip = rng.choice(("203.0.113.7", "2001:db8::5", f"198.51.100.{rng.randrange(1, 40)}"))
        agent, referrer = rng.choice(AGENTS), rng.choice(REFERRERS)
        duration = rng.choice((0, 1, 5, 59, 600, 3000, 4 * 3600, 30 * 3600, rng.randrange(9000)))
        kind = rng.randrange(20)
        if kind < 13:
            path = rng.choice(PATHS)
            lines.append(
                f'{ip} - - [{clf(end)}] "GET {path} HTTP/1.1" 200 {rng.randrange(0, 10**7)} '
                f'"{referrer}" "{agent}" {duration}'
            )
        elif kind == 13:
            lines.append(
                f'{ip} - admin [{clf(end)}] "GET /admin/listclients?mount=/live.mp3 HTTP/1.1" '
                f'200 512 "-" "audimeter/1.0" 0'
            )
        elif kind == 14:
            status = rng.choice((401, 403, 404))
            lines.append(f'{ip} - - [{clf(end)}] "GET /live.mp3 HTTP/1.1" {status} 0 "-" "-" 16')
        elif kind == 15:
            lines.append(
                f'{ip} - source [{clf(end)}] "PUT /live.mp3 HTTP/1.1" 200 0 "-" "butt" {duration}'
            )
        elif kind == 16:
            # Other time zones, a raw quote (Icecast-KH), a query string, a GET of 0 s and 0 bytes.
            lines.append(
                f'{ip} - - [{clf(end + 3600, "+0100")}] "GET /live.mp3?x=1 HTTP/1.0" 200 0 '
                f'"{referrer}" "Player "2" beta" {rng.choice((0, duration))}'
            )
        elif kind == 17:
            good = f'{ip} - - [{clf(end)}] "GET /live.mp3 HTTP/1.1" 200 99 "-" "{agent}" 7'
            lines.append(good[: rng.randrange(len(good))])
        elif kind == 18:
            short = '"GET /a HTTP/1.1" 200 9 "-" "-" 3'
            lines.append(
                rng.choice(
                    (
                        f'{ip} - - [32/Nov/2026:12:00:00 +0000] "GET /live.mp3 HTTP/1.1" 200 9 '
                        '"-" "-" 3',
                        f'{ip} - - [{clf(end)}] "GET /live.mp3 HTTP/1.1" 200 9 "-" "-" '
                        "99999999999999999999",
                        f"{ip} - - [{clf(end).replace(' ', 'x')}] {short}",
                        f"{ip} - - [{clf(end)[:12]}24:00:00 +0000] {short}",
                        f'{ip} - - [{clf(end).lower()}] "GET /live.mp3 HTTP/1.1" 200 9 "-" "-" 3',
                        "\x00\x01 junk \ufffd\ufffd",
                        "",
                    )
                )
            )
        else:
            lines.append(
                f'{ip} - - [{clf(end)}] "GET /live.mp3 HTTP/1.1" 200 1000 "-" "{agent}" '
                f"{10 * 366 * 86400 + 1}"
            )
    return "\r\n".join(lines) + "\n"


def digest(rows: list[tuple[object, ...]]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def by_visitor(journal: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """The journal's rows without their sequence numbers, each visitor's in journal order, the
    visitors in the order of their ids."""
    visitors: dict[str, list[tuple[object, ...]]] = {}
    for row in journal:
        visitors.setdefault(str(row[15]), []).append(row[1:])
    return [row for visitor in sorted(visitors) for row in visitors[visitor]]


def test_a_mixed_log_journals_and_records_what_it_did(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(mixed_log(), encoding="utf-8", newline="")
    state = tmp_path / "state.db"
    config = parse_config(
        {
            "state": {"path": str(state)},
            "sources": [
                {
                    "name": "main",
                    "kind": "icecast",
                    "url": "http://radio.example.org:8000",
                    "password": "x",
                }
            ],
            "privacy": {"salt_rotation": "never"},
            "keepalive_interval": 1500,
            "filters": {"min_session": 2},
        }
    )
    Store.open(state).close()
    with sqlite3.connect(state) as db:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('visitor_salt', 'fixed')")
    dry = io.StringIO()
    assert run_import(config, "main", [log], dry_run=True, out=dry, err=io.StringIO()) == 0
    shown = dry.getvalue().splitlines()
    assert (len(shown), digest([(line,) for line in sorted(shown[:-1])])) == (
        737,
        "51d7d689ec44f1e1",
    )
    assert sum(int(line.split()[3]) for line in shown[:-1]) == 10047  # requests per session
    out = io.StringIO()
    assert run_import(config, "main", [log], out=out, err=io.StringIO()) == 0
    assert (
        out.getvalue()
        .splitlines()[0]
        .endswith(
            "3000 lines, 736 listener sessions, 304 filtered, 197 too short, 404 bad, "
            "1337 not listeners; 10047 events journaled"
        )
    )
    with sqlite3.connect(state) as db:
        journal = db.execute("SELECT * FROM journal ORDER BY seq").fetchall()
        history = db.execute("SELECT * FROM history ORDER BY id").fetchall()
    assert (len(journal), digest(by_visitor(journal))) == (10047, "c42784ac31a25e8d")
    assert (len(history), digest(sorted(row[1:] for row in history))) == (736, "9a0a22fa3938a44a")
