"""The real daemon under load: 100,000 listeners over 20 mounts, polled every 10 s.

Target: in steady state, with Matomo and a JSON-lines file both on, `audimeter run` uses at
most 10% of one core and 200 MB resident memory (`--no-jsonl`: Matomo alone).

A fake Icecast 2.4 (its own process) serves /admin/stats and /admin/listclients for 20 mounts of
5,000 listeners each, behind HTTP Basic admin:hackme. Every listener has a fixed connect time,
so `Connected` grows in real time; the connect times are spread evenly over one keep-alive
interval, so keep-alives fall evenly and the cold start is exactly 100,000 session starts. About
1% of each mount's listeners leave per minute and as many new ones arrive. A recording Matomo
(its own process) takes the bulk tracking requests. The daemon runs as a child process with a
TOML config; its CPU time (/proc/PID/stat) and resident memory (/proc/PID/status) are read over
a window that starts once the cold start is delivered (at least 25 s in).

    .venv/bin/python benchmarks/bench_load.py [--warmup 25] [--window 80]

Figures measured on the development machine, with what changed them: docs/development.md,
under "Benchmarks".
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, urlsplit

import httpx
from bench_matomo_sink import TOKEN, matomo_tally, serve_matomo, start_server, stop_server
from bench_poll import USER_AGENTS, random_ip

MOUNTS = 20
PER_MOUNT = 5_000
LISTENERS = MOUNTS * PER_MOUNT
POLL_INTERVAL = 10
KEEPALIVE = 120
SPREAD = KEEPALIVE
"""Connect times lie 1..SPREAD s before the server starts, evenly over all listeners."""
CHURN_PER_MINUTE = 0.01
USERNAME, PASSWORD = "admin", "hackme"
SERVER_START = "2026-11-26T12:44:04+0000"

CPU_TARGET = 10.0
"""Percent of one core."""
RSS_TARGET_MB = 200.0
WARMUP_CAP = 90.0
"""Give up waiting for the cold start to be delivered after this many seconds."""


# -- the fake Icecast (runs in a child process) ----------------------------------------------


@dataclass(slots=True)
class FakeMount:
    name: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    # [connect time, "<listener>…<Connected>", "</Connected><ID>…</listener>"] per listener
    listeners: list[tuple[int, str, str]] = field(default_factory=list)
    churned: int = 0
    listed_at: int = 0


class FakeIcecastServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, seed: int, mounts: int = MOUNTS, per_mount: int = PER_MOUNT) -> None:
        super().__init__(("127.0.0.1", 0), IcecastHandler)
        self.per_mount = per_mount
        self.total = mounts * per_mount
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.ids = itertools.count(1)
        self.started = time.time()
        start = int(self.started)
        self.auth = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        self.mounts = {f"/m{m:02d}": FakeMount(f"/m{m:02d}") for m in range(1, mounts + 1)}
        listed = list(self.mounts.values())
        for index in range(self.total):
            connected_at = start - 1 - index * SPREAD // self.total
            listed[index % mounts].listeners.append(self.new_listener(connected_at))
        for mount in self.mounts.values():
            mount.listed_at = start
        self.stats_body = self.render_stats()
        self.counts = {"stats": 0, "listclients": 0, "refused": 0}
        self.counts_lock = threading.Lock()

    def new_listener(self, connected_at: int) -> tuple[int, str, str]:
        with self.rng_lock:
            agent = self.rng.choices(
                [ua for _, ua in USER_AGENTS], weights=[w for w, _ in USER_AGENTS]
            )[0]
            ip = random_ip(self.rng)
        head = (
            f"<listener><IP>{ip}</IP><UserAgent>{html.escape(agent, quote=False)}</UserAgent>"
            "<Connected>"
        )
        return connected_at, head, f"</Connected><ID>{next(self.ids)}</ID></listener>"

    def render_stats(self) -> bytes:
        parts = [
            '<?xml version="1.0"?>\n<icestats><admin>bench@localhost</admin>',
            f"<host>127.0.0.1</host><listeners>{self.total}</listeners><location>bench</location>",
            "<server_id>Icecast 2.4.4</server_id>",
            "<server_start>Thu, 26 Nov 2026 12:44:04 +0000</server_start>",
            f"<server_start_iso8601>{SERVER_START}</server_start_iso8601>",
            f"<sources>{len(self.mounts)}</sources>",
        ]
        port = self.server_address[1]
        for name in self.mounts:
            parts.append(
                f'<source mount="{name}"><genre>Various</genre><listener_peak>{self.per_mount}'
                f"</listener_peak><listeners>{self.per_mount}</listeners>"
                f"<listenurl>http://127.0.0.1:{port}{name}</listenurl>"
                "<max_listeners>unlimited</max_listeners><public>0</public>"
                f"<server_name>Bench {name}</server_name><server_type>audio/mpeg</server_type>"
                "<slow_listeners>0</slow_listeners></source>"
            )
        parts.append("</icestats>\n")
        return "".join(parts).encode()

    def listclients(self, mount: FakeMount) -> bytes:
        now_float = time.time()
        now = int(now_float)
        with mount.lock:
            due = int((now_float - self.started) * self.per_mount * CHURN_PER_MINUTE / 60)
            while mount.churned < due:
                # One leaves, one arrives somewhere since this mount was last listed.
                with self.rng_lock:
                    victim = self.rng.randrange(len(mount.listeners))
                    arrival = self.rng.randint(min(mount.listed_at + 1, now), now)
                mount.listeners[victim] = mount.listeners[-1]
                mount.listeners[-1] = self.new_listener(arrival)
                mount.churned += 1
            mount.listed_at = now
            parts = [
                '<?xml version="1.0"?>\n<icestats>',
                f'<source mount="{mount.name}"><Listeners>{len(mount.listeners)}</Listeners>',
            ]
            parts.extend(f"{head}{now - at}{tail}" for at, head, tail in mount.listeners)
        parts.append("</source></icestats>\n")
        return "".join(parts).encode()

    def count(self, what: str) -> None:
        with self.counts_lock:
            self.counts[what] += 1


class IcecastHandler(BaseHTTPRequestHandler):
    # Icecast 2.4 answers admin requests as HTTP/1.0 and closes the connection.
    protocol_version = "HTTP/1.0"
    server_version = "Icecast 2.4.4"
    sys_version = ""
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Connection", "Close")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, no-store")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        server = cast(FakeIcecastServer, self.server)
        url = urlsplit(self.path)
        if url.path == "/bench/counts":
            with server.counts_lock:
                body = repr(server.counts).replace("'", '"').encode()
            self._answer(200, body, "application/json")
            return
        if self.headers.get("Authorization") != server.auth:
            server.count("refused")
            self._answer(
                401,
                b"You need to authenticate\r\n",
                "text/plain; charset=utf-8",
                {"WWW-Authenticate": 'Basic realm="Icecast2 Server"'},
            )
            return
        if url.path == "/admin/stats":
            server.count("stats")
            self._answer(200, server.stats_body, "text/xml; charset=utf-8")
            return
        if url.path == "/admin/listclients":
            mount = server.mounts.get(parse_qs(url.query).get("mount", [""])[0])
            if mount is None:
                self._answer(
                    400,
                    b"<html><head><title>Error 400</title></head><body><b>400 - Source does "
                    b"not exist</b></body></html>\r\n",
                    "text/html; charset=utf-8",
                )
                return
            server.count("listclients")
            self._answer(200, server.listclients(mount), "text/xml; charset=utf-8")
            return
        self._answer(404, b"<html><body>404 - Not found</body></html>", "text/html")


def serve_icecast(
    conn: Connection, seed: int, mounts: int = MOUNTS, per_mount: int = PER_MOUNT
) -> None:
    """Child process: serve until terminated; the port goes back through `conn`."""
    server = FakeIcecastServer(seed, mounts, per_mount)
    conn.send(server.server_address[1])
    conn.close()
    server.serve_forever(poll_interval=0.5)


def icecast_counts(base_url: str) -> dict[str, int]:
    answer = httpx.get(base_url + "/bench/counts", timeout=10).json()
    return {str(k): int(v) for k, v in answer.items()}


# -- measuring the daemon --------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command name: state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and its peak so far (VmRSS, VmHWM) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def write_config(directory: Path, icecast_port: int, matomo_port: int, extra: str = "") -> Path:
    """The daemon's config; `extra` (TOML tables) goes before the source."""
    config = directory / "audimeter.toml"
    config.write_text(
        f"""\
[state]
path = "{directory / "state.db"}"

[matomo]
url = "http://127.0.0.1:{matomo_port}/"
site_id = 1
token_auth = "{TOKEN}"
keepalive_interval = {KEEPALIVE}
visit_length = 1800
{extra}
[[sources]]
name = "bench"
kind = "icecast"
url = "http://127.0.0.1:{icecast_port}"
username = "{USERNAME}"
password = "{PASSWORD}"
poll_interval = {POLL_INTERVAL}
""",
        encoding="utf-8",
    )
    return config


@dataclass(slots=True)
class Sample:
    at: float
    cpu: float
    rss: float


def sample(pid: int) -> Sample:
    rss, _ = memory_mb(pid)
    return Sample(time.monotonic(), cpu_seconds(pid), rss)


def log_problems(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line for line in lines if " WARNING " in line or " ERROR " in line]


def stop_daemon(daemon: subprocess.Popen[bytes]) -> str:
    """SIGTERM, and how it ended."""
    if daemon.poll() is not None:
        return f"had exited with status {daemon.returncode}"
    stopping = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    try:
        code: int | str = daemon.wait(30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        code = "killed after 30 s"
    return f"exit status {code} {time.monotonic() - stopping:.1f} s after SIGTERM"


def measure(args: argparse.Namespace, directory: Path, icecast_url: str, matomo_url: str) -> None:
    jsonl = f'[jsonl]\npath = "{directory / "sessions.jsonl"}"\n' if args.jsonl else ""
    config = write_config(
        directory, int(icecast_url.rsplit(":", 1)[1]), int(matomo_url.rsplit(":", 1)[1]), jsonl
    )
    log_path = directory / "audimeter.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "audimeter", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    started = time.monotonic()
    try:
        # Cold start: wait for the 100,000 session starts to reach Matomo.
        warm = False
        while time.monotonic() - started < WARMUP_CAP:
            time.sleep(1)
            if daemon.poll() is not None:
                break
            past_warmup = time.monotonic() - started >= args.warmup
            if past_warmup and matomo_tally(matomo_url).requests >= LISTENERS:
                warm = True
                break
        if daemon.poll() is not None:
            print(f"FAIL: the daemon exited with status {daemon.returncode} during the cold start")
            print(log_path.read_text(encoding="utf-8", errors="replace")[-3000:])
            return
        warmup = time.monotonic() - started
        cold_cpu = cpu_seconds(daemon.pid)
        _, cold_peak = memory_mb(daemon.pid)
        print(
            f"cold start: {warmup:.0f} s until {'all' if warm else 'NOT all'} {LISTENERS} "
            f"session starts reached Matomo; daemon CPU so far {cold_cpu:.1f} s, "
            f"peak RSS so far {cold_peak:.0f} MB"
        )

        # Steady state.
        first = sample(daemon.pid)
        matomo_before = matomo_tally(matomo_url)
        icecast_before = icecast_counts(icecast_url)
        peak = first.rss
        while time.monotonic() - first.at < args.window:
            time.sleep(0.5)
            if daemon.poll() is not None:
                print(f"FAIL: the daemon exited with status {daemon.returncode} while measured")
                print(log_path.read_text(encoding="utf-8", errors="replace")[-3000:])
                return
            peak = max(peak, sample(daemon.pid).rss)
        last = sample(daemon.pid)
        peak = max(peak, last.rss)
        matomo_after = matomo_tally(matomo_url)
        icecast_after = icecast_counts(icecast_url)
        _, overall_peak = memory_mb(daemon.pid)
    finally:
        stopped = stop_daemon(daemon)

    seconds = last.at - first.at
    cpu = (last.cpu - first.cpu) / seconds * 100
    polls = icecast_after["stats"] - icecast_before["stats"]
    listings = icecast_after["listclients"] - icecast_before["listclients"]
    received = matomo_after.requests - matomo_before.requests
    churn = 2 * LISTENERS * CHURN_PER_MINUTE / 60 * seconds
    expected = LISTENERS / KEEPALIVE * seconds + churn
    problems = log_problems(log_path)
    print(f"steady-state window: {seconds:.1f} s")
    print(f"  daemon CPU: {last.cpu - first.cpu:.2f} s = {cpu:.1f}% of one core")
    print(f"  daemon RSS: peak {peak:.0f} MB in the window, {last.rss:.0f} MB at its end")
    print(
        f"  daemon RSS peak over the whole run (VmHWM, with the cold start): {overall_peak:.0f} MB"
    )
    print(f"  polls seen: {polls} /admin/stats, {listings} /admin/listclients")
    print(
        f"  Matomo requests received: {received} in {matomo_after.posts - matomo_before.posts} "
        f"POSTs ({received / seconds:.0f}/s; keep-alives and churn predict ~{expected:.0f})"
    )
    print(f"  daemon: {stopped}; {len(problems)} warning/error log lines")
    for line in problems[:5]:
        print(f"    {line}")
    verdict = {True: "PASS", False: "FAIL"}
    print(f"{verdict[cpu <= CPU_TARGET]}: CPU {cpu:.1f}% of one core (target {CPU_TARGET:g}%)")
    print(f"{verdict[peak <= RSS_TARGET_MB]}: peak RSS {peak:.0f} MB (target {RSS_TARGET_MB:g} MB)")


@contextlib.contextmanager
def servers(
    seed: int, mounts: int = MOUNTS, per_mount: int = PER_MOUNT
) -> Iterator[tuple[int, int]]:
    """The fake Icecast and the recording Matomo, each in its own process: their ports."""
    icecast, icecast_port = start_server(serve_icecast, seed, mounts, per_mount)
    try:
        matomo, matomo_port = start_server(serve_matomo, TOKEN)
        try:
            yield icecast_port, matomo_port
        finally:
            stop_server(matomo)
    finally:
        stop_server(icecast)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--warmup", type=float, default=25.0, help="seconds to skip at least")
    parser.add_argument("--window", type=float, default=80.0, help="seconds to measure")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--no-jsonl", dest="jsonl", action="store_false", help="Matomo alone, no [jsonl] output"
    )
    args = parser.parse_args()
    with (
        servers(args.seed) as (icecast_port, matomo_port),
        tempfile.TemporaryDirectory(prefix="audimeter-load-") as tmp,
    ):
        measure(
            args,
            Path(tmp),
            f"http://127.0.0.1:{icecast_port}",
            f"http://127.0.0.1:{matomo_port}",
        )


if __name__ == "__main__":
    main()
