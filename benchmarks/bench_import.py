"""Parse and sessionize a large Icecast access log, as `audimeter import` does, without HTTP.

Target: at least 100,000 lines per second through parsing, classification, the listener policy,
slots, `replay_session` and mapping every event to its Matomo query string.

The log is generated as Icecast 2.4 writes it (combined format plus the seconds connected, one
line per finished connection, in the order of disconnection) for one day of a station with
three mounts, in the proportions of the connection counters that Icecast's documentation shows
as an example (14% listeners, 58% files, 28% admin): listeners (IPv4 and IPv6, about 30 players
in realistic proportions, sessions from a second to hours, returning listeners, some behind one
address with the same player at the same time), relays and monitors that the default filters
leave out, web players' status and web-root requests, refused requests, source clients, and a
poller's admin requests. Generating the log is not timed. The cost of a listener line and of
another line are measured apart, so the rate of any other mix follows.

    .venv/bin/python benchmarks/bench_import.py [--lines N] [--listener-share F] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import gzip
import io
import pstats
import random
import resource
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from audimeter.config import parse_config
from audimeter.importer import (
    Counts,
    gc_paused,
    plan_lines,
    read_lines,
)
from audimeter.journal import Stamper
from audimeter.matomo.mapping import mapper_for
from audimeter.store import Store

TARGET = 100_000.0
LISTENER_SHARE = 0.14
"""Icecast's documentation shows a server's counters as an example: 649 client connections, of
which 90 listeners and 379 files (web root, status pages), the rest admin requests."""
T0 = 1_795_046_400  # 2026-11-16 00:00:00 UTC
DAY = 86400
MOUNTS = ((70, "/live.mp3"), (20, "/live.aac"), (10, "/talk.mp3"))
CONFIG = {
    "state": {"path": "bench.db"},
    "matomo": {"url": "https://matomo.example.org/", "site_id": 1, "token_auth": "x" * 32},
    "sources": [
        {
            "name": "main",
            "kind": "icecast",
            "url": "http://radio.example.org:8000",
            "password": "hackme",
            "sites": {"/talk.mp3": 2},
        }
    ],
}

# (weight, user agent) of listeners
PLAYERS: tuple[tuple[int, str], ...] = (
    (
        90,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    ),
    (
        45,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    ),
    (35, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    (
        30,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.1 Safari/605.1.15",
    ),
    (
        8,
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    ),
    (
        60,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
    ),
    (
        55,
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.43 Mobile Safari/537.36",
    ),
    (50, "AppleCoreMedia/1.0.0.21B101 (iPhone; U; CPU OS 17_1_2 like Mac OS X; de_de)"),
    (20, "AppleCoreMedia/1.0.0.20G81 (iPhone; U; CPU OS 16_6_1 like Mac OS X; en_us)"),
    (6, "AppleCoreMedia/1.0.0.21J354 (Apple TV; U; CPU OS 17_1 like Mac OS X; en_us)"),
    (30, "ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2"),
    (15, "ExoPlayerLib/2.19.1 (Linux; Android 14) radio.de/5.11.2"),
    (25, "stagefright/1.2 (Linux;Android 12)"),
    (10, "Dalvik/2.1.0 (Linux; U; Android 11; Redmi Note 8 Pro Build/RP1A.200720.011)"),
    (8, "okhttp/4.11.0"),
    (25, "TuneIn Radio/31.4.0; iPhone15,2; iOS/17.1.2"),
    (12, "TuneIn Radio Pro/29.8.1 (Linux;Android 12) ExoPlayerLib/2.18.1"),
    (9, "myTuner/9.1.8 (iPhone; iOS 17.1; Scale/3.00)"),
    (6, "Radio Garden/2.5.1 (com.jonathanpuckey.radiogarden; build:1; iOS 17.1.1) Alamofire/5.8.0"),
    (15, "VLC/3.0.20 LibVLC/3.0.20"),
    (8, "VLC/3.0.18 LibVLC/3.0.18"),
    (
        10,
        "iTunes/12.13 (Windows; Microsoft Windows 10 x64 Professional Edition (Build 19045); x64) "
        "AppleWebKit/7617.1017.1001.1",
    ),
    (6, "WinampMPEG/5.66, Ultravox/2.1"),
    (5, "foobar2000/2.0"),
    (4, "NSPlayer/12.00.19041.3636 WMFSDK/12.00.19041.3636"),
    (4, "Windows-Media-Player/12.0.19041.3636"),
    (5, "Lavf/58.76.100"),
    (3, "mpv 0.36.0"),
    (2, "BASS/2.4"),
    (6, "Sonos/79.1-52294 (ZPS27)"),
    (5, "Roku/DVP-12.5 (12.5.0.4174-AE)"),
    (4, "Alexa Mobile Voice/2.2.564 (Linux; Android 12)"),
    (3, "-"),
)
# (weight, user agent) of connections the default filters leave out
MACHINES: tuple[tuple[int, str], ...] = (
    (5, "Icecast 2.4.4"),
    (3, "Liquidsoap/2.2.2 (Unix; OCaml 4.14.1)"),
    (3, "Streamripper/1.x"),
    (3, "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"),
    (2, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    (2, "curl/8.5.0"),
)
REFERRERS = (
    "-",
    "-",
    "-",
    "https://radio.example.org/",
    "https://radio.example.org/player",
    "https://www.google.com/",
    "https://radio.garden/",
)


def _weighted(pairs: tuple[tuple[int, str], ...]) -> tuple[list[str], list[int]]:
    return [p for _, p in pairs], [w for w, _ in pairs]


def clf_time(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


@dataclass(frozen=True, slots=True)
class Line:
    end: int
    text: str
    listener: bool = False
    """A listener's connection (counted or filtered), as opposed to any other request."""


def duration(rng: random.Random) -> int:
    """Seconds of one connection: many very short ones, a median of minutes, a long tail."""
    roll = rng.random()
    if roll < 0.22:
        return rng.randint(0, 15)  # player probes, reconnects, skipped stations
    if roll < 0.30:
        return rng.randint(16, 59)
    return min(int(rng.lognormvariate(6.4, 1.3)) + 60, 10 * 3600)


def generate(total: int, listener_share: float, seed: int = 7) -> list[Line]:
    """`total` access log lines of one day, in the order Icecast writes them (at disconnect).

    `listener_share` of them are listener connections (8% of those from relays, monitors and
    bots that the default filters leave out); of the rest, 27/86 are admin requests of a poller,
    2/86 refused requests and a few source reconnections, the others web-root requests of web
    players (status pages, stylesheets, icons, playlists).
    """
    rng = random.Random(seed)
    players, player_weights = _weighted(PLAYERS)
    machines, machine_weights = _weighted(MACHINES)
    mounts, mount_weights = _weighted(MOUNTS)
    rest = total - round(total * listener_share)
    admin = round(rest * 27 / 86)
    refused = round(rest * 2 / 86)
    sources = max(rest // 10_000, 1)
    files = rest - admin - refused - sources
    lines: list[Line] = []

    # The poller: /admin/stats, then /admin/listclients for each mount, at a steady interval.
    interval = DAY * (1 + len(mounts)) / admin
    for i in range(admin):
        t = T0 + int(i // (1 + len(mounts)) * interval)
        page = "/admin/stats" if i % (1 + len(mounts)) == 0 else "/admin/listclients"
        lines.append(
            Line(
                t,
                f'127.0.0.1 - admin [{clf_time(t)}] "GET {page} HTTP/1.1" 200 '
                f'{rng.randint(400, 90_000)} "-" "audimeter/0.1.0" 0',
            )
        )

    # A pool of listener addresses; half the connections come from a few frequent ones.
    pool = [
        f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        for _ in range(30_000)
    ]
    pool += [
        f"2a02:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
        for _ in range(8_000)
    ]
    habits = dict(zip(pool, rng.choices(players, player_weights, k=len(pool)), strict=True))

    def address() -> str:
        if rng.random() < 0.5:
            return pool[min(int(rng.paretovariate(0.9)) - 1, len(pool) - 1)]
        return rng.choice(pool)

    for _ in range(total - rest):
        end = T0 + rng.randrange(DAY)
        ip = address()
        if rng.random() < 0.92:
            stayed = duration(rng)
            agent = habits[ip] if rng.random() < 0.9 else rng.choices(players, player_weights)[0]
            mount = rng.choices(mounts, mount_weights)[0]
            sent = stayed * 16_000 + rng.randint(0, 65_536) if stayed else rng.randint(0, 2048)
            text = (
                f'{ip} - - [{clf_time(end)}] "GET {mount} HTTP/1.1" 200 {sent} '
                f'"{rng.choice(REFERRERS)}" "{agent}" {stayed}'
            )
        else:  # a relay, monitor, bot or tool
            agent = rng.choices(machines, machine_weights)[0]
            stayed = rng.choice((0, 1, 5, 30, 3600, 86_400))
            text = (
                f'{ip} - - [{clf_time(end)}] "GET {rng.choice(mounts)} HTTP/1.1" 200 '
                f'{stayed * 16_000 + 400} "-" "{agent}" {stayed}'
            )
        lines.append(Line(end, text, listener=True))

    web_root = (
        "/status-json.xsl",
        "/status-json.xsl",
        "/status-json.xsl",
        "/status.xsl",
        "/style.css",
        "/favicon.ico",
        "/icecast.png",
        "/live.mp3.m3u",
    )
    for _ in range(files):
        end = T0 + rng.randrange(DAY)
        lines.append(
            Line(
                end,
                f'{address()} - - [{clf_time(end)}] "GET {rng.choice(web_root)} HTTP/1.1" 200 '
                f'{rng.randint(300, 4000)} "https://radio.example.org/" '
                f'"{rng.choices(players, player_weights)[0]}" 0',
            )
        )
    for _ in range(refused):
        end = T0 + rng.randrange(DAY)
        status, path = rng.choice(
            ((404, "/live"), (404, "/stream"), (403, "/live.mp3"), (400, "/live.mp3"))
        )
        lines.append(
            Line(
                end,
                f'{address()} - - [{clf_time(end)}] "GET {path} HTTP/1.1" {status} 330 "-" '
                f'"{rng.choices(players, player_weights)[0]}" 0',
            )
        )
    for _ in range(sources):
        end = T0 + rng.randrange(DAY)
        lines.append(
            Line(
                end,
                f'10.0.0.5 - source [{clf_time(end)}] "PUT {rng.choice(mounts)} HTTP/1.1" '
                f'200 19 "-" "Liquidsoap/2.2.2 (Unix; OCaml 4.14.1)" {rng.randint(60, 86_400)}',
            )
        )
    lines.sort(key=lambda line: line.end)
    return lines


def run_once(lines: list[str]) -> tuple[float, Counts, int]:
    """Seconds to turn the lines into query strings, the counts, and the number of requests."""
    config = parse_config(CONFIG)
    assert config.matomo is not None
    source = config.sources[0]
    mapper = mapper_for(config, config.matomo, "0" * 64)
    counts = Counts()
    gc.collect()
    started = time.perf_counter()
    with gc_paused():
        events = plan_lines(lines, config=config, source=source, key="f" * 64, counts=counts)
        requests = [mapper.query_string(event) for event in events]
    elapsed = time.perf_counter() - started
    return elapsed, counts, len(requests)


def file_and_store(lines: list[str]) -> tuple[float, float, float]:
    """For information: reading the gzipped log, and committing the requests to SQLite."""
    config = parse_config(CONFIG)
    assert config.matomo is not None
    source = config.sources[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "access.log.1.gz"
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
            gz.write(("\n".join(lines) + "\n").encode())
        path.write_bytes(buffer.getvalue())
        started = time.perf_counter()
        for _ in read_lines(path):
            pass
        reading = time.perf_counter() - started
        counts = Counts()
        store = Store.open(Path(tmp) / "state.db")
        stamp = Stamper(config, store.salt())
        started = time.perf_counter()
        with gc_paused():
            events = plan_lines(
                read_lines(path), config=config, source=source, key="e" * 64, counts=counts
            )
            requests = [stamp(event) for event in events]
        whole = time.perf_counter() - started
        started = time.perf_counter()
        store.commit_import("e" * 64, "main", str(path), counts.lines, requests)
        committing = time.perf_counter() - started
        store.close()
    return reading, whole, committing


def best_of(lines: list[str], repeat: int) -> tuple[list[float], Counts, int]:
    runs = [run_once(lines) for _ in range(repeat)]
    _, counts, requests = min(runs, key=lambda run: run[0])
    return [run[0] for run in runs], counts, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=300_000, help="lines to generate")
    parser.add_argument(
        "--listener-share",
        type=float,
        default=LISTENER_SHARE,
        help=f"the share of listener connections among the lines (default {LISTENER_SHARE})",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (the best counts)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    args = parser.parse_args()

    print(f"generating about {args.lines:,} Icecast access log lines ...", flush=True)
    generated = generate(args.lines, args.listener_share)
    lines = [line.text for line in generated]
    listener_lines = [line.text for line in generated if line.listener]
    other_lines = [line.text for line in generated if not line.listener]
    share = len(listener_lines) / len(lines)
    print(
        f"{len(lines):,} lines, {sum(map(len, lines)) / 1e6:.1f} MB, "
        f"{share:.0%} of them listener connections (counted or filtered)"
    )

    times, counts, requests = best_of(lines, args.repeat)
    best = min(times)
    rate = len(lines) / best
    print(
        f"lines: {counts.lines:,}: {counts.sessions:,} listener sessions, {counts.filtered:,} "
        f"filtered, {counts.too_short:,} too short, {counts.bad:,} bad, "
        f"{counts.other:,} not listeners"
    )
    print(f"requests: {requests:,} ({requests / max(counts.sessions, 1):.2f} per session)")
    print(
        "parse + sessionize + map: "
        + ", ".join(f"{t:.2f} s" for t in times)
        + f"; best {best:.2f} s = {rate:,.0f} lines/s"
    )
    # The cost of each kind of line, to work out the rate of any other mix.
    per_listener = min(best_of(listener_lines, args.repeat)[0]) / len(listener_lines)
    per_other = min(best_of(other_lines, args.repeat)[0]) / len(other_lines)
    budget = 1 / TARGET
    break_even = (budget - per_other) / (per_listener - per_other)
    print(
        f"per line: {per_listener * 1e6:.1f} us for a listener connection, "
        f"{per_other * 1e6:.1f} us for another request; {TARGET:,.0f} lines/s holds while "
        f"listener connections are at most {break_even:.0%} of the lines"
    )
    reading, whole, committing = file_and_store(lines)
    print(
        f"for information: reading the gzipped file {reading:.2f} s; reading + parse + "
        f"sessionize + map {whole:.2f} s = {len(lines) / whole:,.0f} lines/s; "
        f"committing {requests:,} requests to SQLite {committing:.2f} s"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:,.0f} MB")
    print(
        f"{'PASS' if rate >= TARGET else 'FAIL'}: {rate:,.0f} lines/s parsed and sessionized "
        f"(target >= {TARGET:,.0f})"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_once(lines)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
