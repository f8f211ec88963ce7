"""`audimeter import` of a large, realistic Icecast access log, run as an operator runs it.

Targets, on a log with 71% listener lines: at least 100,000 lines/s in `--dry-run` and 50,000
lines/s in a real import to a local recording Matomo, and memory bounded by the sessions open at
one moment, not by the file (a 10,000,000-line log in at most 300 MB resident).

The log is generated as Icecast 2.4 writes it (combined format plus the seconds connected, one
line per finished connection, in the order of disconnection), about 330,000 lines a day (a busy
station: 10,000,000 lines are a month) over three mounts, with a daily rhythm: listeners (IPv4
and IPv6, about 30 players in realistic proportions, returning listeners who keep their player,
sessions from player probes of a few seconds to a median of ten minutes and a tail of hours,
smart speakers and shop radios left on for a day or two, look-alikes behind one carrier-grade
NAT address with the same player at the same time), relays, monitors, recorders and bots that
the default filters leave out, web players polling the status pages, web-root files, refused
requests, source reconnections, a poller's admin requests, and malformed lines (cut short,
binary junk). It is written to a file first (not timed). Then `audimeter import` runs in a child
process, once with `--dry-run` (its output to /dev/null) and once for real with a fresh state
file, sending to the recorder of bench_matomo_sink.py (real HTTP, keep-alive) in a process of its
own, so that it takes no CPU from this one and little at all: it counts the bulk POSTs and their
requests and sums a checksum of them, keeping none. For each mode, the script reports lines/s
and the child's peak resident memory (its rusage); for the real import also the time until every
event was journaled, the rate of delivery, the CPU the recorder used and the load average, and
it checks that the requests of every event in the journal arrived exactly once (the same count
and checksum as the journal's events mapped as the import maps them).

    .venv/bin/python benchmarks/bench_import.py [--lines N] [--only dry-run|real] [--profile]

Figures measured on the development machine, with what changed them: docs/development.md,
under "Benchmarks".
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_matomo_sink import (  # noqa: E402
    checksum,
    matomo_tally,
    serve_matomo,
    start_server,
    stop_server,
)

from audimeter.config import load_config  # noqa: E402
from audimeter.matomo.mapping import mapper_for  # noqa: E402
from audimeter.store import Store  # noqa: E402
from tests.support.matomo import DEFAULT_TOKEN  # noqa: E402

DRY_RUN_TARGET = 100_000.0
REAL_TARGET = 50_000.0
MEMORY_TARGET_MB = 300.0
LISTENER_SHARE = 0.71
LINES_PER_DAY = 330_000
T0 = 1_795_046_400  # 2026-11-16 00:00:00 UTC
DAY = 86400
HOUR = 3600
MOUNTS = ((70, "/live.mp3"), (20, "/live.aac"), (10, "/talk.mp3"))
RHYTHM = (3, 2, 1, 1, 1, 2, 5, 9, 10, 8, 7, 7, 8, 7, 7, 7, 8, 9, 9, 8, 7, 6, 5, 4)
"""Relative listening per hour of the day (UTC): a night low, morning and evening highs."""

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


def duration(rng: random.Random) -> int:
    """Seconds of one listener's connection: many very short ones (player probes, reconnects,
    skipped stations), a median of minutes, a tail of hours, and a few players left on."""
    roll = rng.random()
    if roll < 0.22:
        return rng.randint(0, 15)
    if roll < 0.30:
        return rng.randint(16, 59)
    if roll < 0.997:
        return min(int(rng.lognormvariate(6.4, 1.3)) + 60, 10 * HOUR)
    return rng.randint(12 * HOUR, 2 * DAY)  # a smart speaker or a shop's radio


class Station:
    """The people and machines that connect to the station, and their habits."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.players, self.player_weights = _weighted(PLAYERS)
        self.machines, self.machine_weights = _weighted(MACHINES)
        self.mounts, self.mount_weights = _weighted(MOUNTS)
        pool = [
            f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
            f"{rng.randint(1, 254)}"
            for _ in range(60_000)
        ]
        pool += [
            f"2a02:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}::"
            f"{rng.randint(1, 0xFFFF):x}"
            for _ in range(15_000)
        ]
        self.pool = pool
        self.habits = dict(
            zip(pool, rng.choices(self.players, self.player_weights, k=len(pool)), strict=True)
        )
        # Carrier-grade NAT: many phones behind a few addresses, most with one player.
        self.nat = [f"100.64.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for _ in range(40)]

    def address(self) -> str:
        rng = self.rng
        # Half the connections from returning listeners, some of them very often.
        skew = 3 if rng.random() < 0.5 else 1
        return self.pool[int(len(self.pool) * rng.random() ** skew)]

    def player(self) -> str:
        return self.rng.choices(self.players, self.player_weights)[0]

    def listener(self, end: int) -> str:
        rng = self.rng
        if rng.random() < 0.04:
            ip = rng.choice(self.nat)
            agent = self.players[5] if rng.random() < 0.7 else self.player()
        else:
            ip = self.address()
            agent = self.habits[ip] if rng.random() < 0.9 else self.player()
        stayed = duration(rng)
        mount = rng.choices(self.mounts, self.mount_weights)[0]
        sent = stayed * 16_000 + rng.randint(0, 65_536) if stayed else rng.randint(0, 2048)
        return (
            f'{ip} - - [{clf_time(end)}] "GET {mount} HTTP/1.1" 200 {sent} '
            f'"{rng.choice(REFERRERS)}" "{agent}" {stayed}'
        )

    def machine(self, end: int) -> str:
        """A relay, monitor, recorder or bot on a mount."""
        rng = self.rng
        agent = rng.choices(self.machines, self.machine_weights)[0]
        stayed = rng.choice((0, 1, 5, 30, 3600, 86_400, 3 * DAY))
        return (
            f'{self.address()} - - [{clf_time(end)}] "GET {rng.choice(self.mounts)} HTTP/1.1" '
            f'200 {stayed * 16_000 + 400} "-" "{agent}" {stayed}'
        )

    def other(self, end: int) -> str:
        """Anything but a listener: status polls, files, admin, refusals, sources, junk."""
        rng = self.rng
        roll = rng.random()
        when = clf_time(end)
        if roll < 0.30:
            page = rng.choice(("/admin/stats", "/admin/listclients", "/admin/listclients"))
            return (
                f'127.0.0.1 - admin [{when}] "GET {page} HTTP/1.1" 200 '
                f'{rng.randint(400, 90_000)} "-" "audimeter/0.1.0" 0'
            )
        if roll < 0.90:
            path = rng.choice(WEB_ROOT)
            return (
                f'{self.address()} - - [{when}] "GET {path} HTTP/1.1" 200 '
                f'{rng.randint(300, 4000)} "https://radio.example.org/" "{self.player()}" 0'
            )
        if roll < 0.96:
            status, path = rng.choice(
                ((404, "/live"), (404, "/stream"), (403, "/live.mp3"), (401, "/live.mp3"))
            )
            return (
                f'{self.address()} - - [{when}] "GET {path} HTTP/1.1" {status} 330 "-" '
                f'"{self.player()}" {rng.randint(0, 16)}'
            )
        if roll < 0.97:
            return (
                f'10.0.0.5 - source [{when}] "PUT {rng.choice(self.mounts)} HTTP/1.1" 200 19 '
                f'"-" "Liquidsoap/2.2.2 (Unix; OCaml 4.14.1)" {rng.randint(60, DAY)}'
            )
        text = self.listener(end)
        if roll < 0.985:
            return text[: rng.randint(10, len(text) - 5)]  # cut short: a full disk, a crash
        return text.replace('"', "\x00\x7f", 1)  # binary junk in the middle


WEB_ROOT = (
    "/status-json.xsl",
    "/status-json.xsl",
    "/status-json.xsl",
    "/status.xsl",
    "/style.css",
    "/favicon.ico",
    "/icecast.png",
    "/live.mp3.m3u",
)


def write_log(path: Path, total: int, listener_share: float, seed: int = 7) -> tuple[int, int]:
    """`total` lines (about) over `total / LINES_PER_DAY` days, in the order Icecast writes
    them; the number of lines written and of listener lines among them."""
    rng = random.Random(seed)
    station = Station(rng)
    hours = max(1, round(total / LINES_PER_DAY * 24))
    weights = [RHYTHM[h % 24] for h in range(hours)]
    scale = total / sum(weights)
    written = listeners = 0
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for hour, weight in enumerate(weights):
            last = hour == hours - 1
            count = total - written if last else min(round(weight * scale), total - written)
            start = T0 + hour * HOUR
            lines: list[tuple[int, str]] = []
            for _ in range(count):
                end = start + rng.randrange(HOUR)
                if rng.random() < listener_share:
                    listeners += 1
                    text = station.listener(end) if rng.random() < 0.94 else station.machine(end)
                else:
                    text = station.other(end)
                lines.append((end, text))
            lines.sort(key=lambda pair: pair[0])
            out.writelines(text + "\n" for _, text in lines)
            written += count
    return written, listeners


# -- running the importer ---------------------------------------------------------------------


def write_config(directory: Path, matomo_url: str) -> Path:
    path = directory / "audimeter.toml"
    path.write_text(
        f"""[state]
path = "{directory / "state.db"}"

[matomo]
url = "{matomo_url}"
site_id = 1
token_auth = "{DEFAULT_TOKEN}"

[[sources]]
name = "main"
kind = "icecast"
url = "http://radio.example.org:8000"
password = "hackme"
sites = {{ "/talk.mp3" = 1 }}
"""
    )
    os.chmod(path, 0o600)
    return path


@dataclass
class Child:
    seconds: float
    cpu: float
    """Seconds of CPU (user and system): on a busy machine, the rate the command would reach
    alone is about lines / cpu."""
    peak_mb: float
    status: int
    queued: float | None = None
    """Seconds until the command said its events were journaled (a real import)."""


def run_child(arguments: list[str], profile: bool, *, watch: bool = False) -> Child:
    """Run `audimeter ARGUMENTS` in a child process; with `watch`, read its output to see when
    it has journaled its events (then it delivers them)."""
    command = [sys.executable]
    if profile:
        command += ["-m", "cProfile", "-s", "tottime"]
    command += ["-m", "audimeter", *arguments]
    out = None if profile else subprocess.PIPE if watch else subprocess.DEVNULL
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=out, stderr=None if profile else subprocess.PIPE)
    queued = None
    if child.stdout is not None:
        for line in child.stdout:
            if b"events journaled" in line:
                queued = time.perf_counter() - started
        child.stdout.close()
    _pid, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if child.stderr is not None:
        errors = child.stderr.read().decode(errors="replace").strip()
        child.stderr.close()
        if errors:
            print(f"  (stderr: {errors[:300]})")
    return Child(
        elapsed,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        os.waitstatus_to_exitcode(status),
        queued,
    )


def journaled(config: Path) -> tuple[int, int]:
    """The number and `checksum` of the tracking requests of the events in the state file's
    journal, mapped as the import maps them: what the recorder should have received."""
    settings = load_config(config)
    assert settings.matomo is not None
    store = Store.open(settings.state.path)
    try:
        mapper = mapper_for(settings, settings.matomo, store.salt(), store.title_at)
        count = total = after = 0
        while rows := store.journal_batch(after, 10_000):
            after = rows[-1].seq
            count += len(rows)
            requests = []
            for row in rows:
                assert row.event is not None  # an import journals events only
                requests.append(mapper.query_string(row.event, row.visitor_id))
            total = checksum(requests, total)
    finally:
        store.close()
    return count, total


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines to generate")
    parser.add_argument(
        "--listener-share",
        type=float,
        default=LISTENER_SHARE,
        help=f"the share of listener connections among the lines (default {LISTENER_SHARE})",
    )
    parser.add_argument("--only", choices=("dry-run", "real"), help="run one mode only")
    parser.add_argument(
        "--profile", action="store_true", help="run the child under cProfile and print it"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        log = directory / "access.log"
        print(f"writing about {args.lines:,} Icecast access log lines ...", flush=True)
        written, listeners = write_log(log, args.lines, args.listener_share)
        size = log.stat().st_size
        print(
            f"{written:,} lines ({size / 1e6:,.0f} MB) over {written / LINES_PER_DAY:.1f} "
            f"days, {listeners / written:.0%} of them listener connections (counted or filtered)"
        )
        process, port = start_server(serve_matomo, DEFAULT_TOKEN)
        url = f"http://127.0.0.1:{port}"
        try:
            config = write_config(directory, url)
            base = ["import", "--config", str(config), "--source", "main"]
            if args.only in (None, "dry-run"):
                run = run_child([*base, "--dry-run", str(log)], args.profile)
                rate = written / run.seconds
                print(
                    f"dry run: {run.seconds:.1f} s = {rate:,.0f} lines/s "
                    f"({run.cpu:.1f} s of CPU = {written / run.cpu:,.0f} lines/s), "
                    f"peak {run.peak_mb:,.0f} MB resident (exit status {run.status})"
                )
                print(
                    f"{verdict(rate >= DRY_RUN_TARGET)}: dry run {rate:,.0f} lines/s "
                    f"(target >= {DRY_RUN_TARGET:,.0f}); "
                    f"{verdict(run.peak_mb <= MEMORY_TARGET_MB)}: {run.peak_mb:,.0f} MB "
                    f"(target <= {MEMORY_TARGET_MB:,.0f})"
                )
            if args.only in (None, "real"):
                before = matomo_tally(url)
                load = os.getloadavg()[0]
                run = run_child([*base, str(log)], args.profile, watch=True)
                after = matomo_tally(url)
                received = after.requests - before.requests
                recorder_cpu = after.cpu - before.cpu
                rate = written / run.seconds
                print(
                    f"real import: {run.seconds:.1f} s = {rate:,.0f} lines/s "
                    f"({run.cpu:.1f} s of CPU = {written / run.cpu:,.0f} lines/s), "
                    f"peak {run.peak_mb:,.0f} MB resident (exit status {run.status}), "
                    f"load average {load:.1f} before it and {os.getloadavg()[0]:.1f} after; "
                    f"the recorder (its own process) took {received:,} requests in "
                    f"{after.posts - before.posts:,} POSTs and used {recorder_cpu:.1f} s of CPU"
                )
                if run.queued is not None:
                    sending = run.seconds - run.queued
                    print(
                        f"  read, planned and journaled in {run.queued:.1f} s "
                        f"= {written / run.queued:,.0f} lines/s; delivered in {sending:.1f} s "
                        f"more = {received / sending:,.0f} requests/s"
                    )
                expected, total = journaled(config)
                exact = (
                    received == expected
                    and (after.checksum - before.checksum) % (1 << 64) == total
                    and after.refused == before.refused
                )
                print(
                    f"{verdict(exact)}: the {expected:,} requests of the journaled events "
                    f"arrived {'exactly once each' if exact else 'NOT exactly once each'} "
                    f"({received:,} received, {after.refused - before.refused} refused)"
                )
                print(
                    f"{verdict(rate >= REAL_TARGET)}: real import {rate:,.0f} lines/s "
                    f"(target >= {REAL_TARGET:,.0f}); "
                    f"{verdict(run.peak_mb <= MEMORY_TARGET_MB)}: {run.peak_mb:,.0f} MB "
                    f"(target <= {MEMORY_TARGET_MB:,.0f})"
                )

        finally:
            stop_server(process)


if __name__ == "__main__":
    main()
