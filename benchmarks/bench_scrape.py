"""What scraping /metrics costs the daemon: 100,000 listeners over 20 mounts, scraped every second.

Target: scraping `/metrics` once a second adds at most 1% of one core to `audimeter run`.

The set-up is bench_load.py's (its fake Icecast and recording Matomo, each in its own process,
and its config), with `[metrics]` on. After the cold start (the 100,000 session starts delivered),
the script measures two windows: one without scraping, then one with a scrape every second.
- The PASS/FAIL figure: the daemon's own count of the CPU time its /metrics handler spent
  (`audimeter_metrics_scrape_cpu_seconds_total`, thread CPU time of collecting and rendering)
  over the scrapes of the second window, as a share of one core at one scrape a second.
- For information: the daemon's whole CPU (/proc/PID/stat) in each window. Their difference
  holds the HTTP exchange too, but also the noise of the daemon's own work (polls, deliveries),
  which on a shared machine is larger than what is measured.

    .venv/bin/python benchmarks/bench_scrape.py [--warmup 25] [--window 30]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bench_load import (
    LISTENERS,
    WARMUP_CAP,
    cpu_seconds,
    servers,
    stop_daemon,
    write_config,
)
from bench_matomo_sink import matomo_tally

TARGET = 1.0
"""Percent of one core added by one scrape a second."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_rate(pid: int, seconds: float, scrape: httpx.Client | None) -> tuple[float, int]:
    """The daemon's CPU over `seconds` as a share of one core, scraping once a second if asked."""
    started, cpu = time.monotonic(), cpu_seconds(pid)
    scrapes = 0
    while (left := started + seconds - time.monotonic()) > 0:
        if scrape is not None:
            scrape.get("/metrics").raise_for_status()
            scrapes += 1
        time.sleep(min(1.0 - (time.monotonic() - started) % 1.0, left))
    return (cpu_seconds(pid) - cpu) / (time.monotonic() - started), scrapes


def scrape_cost(client: httpx.Client) -> tuple[float, float]:
    """The daemon's count of scrapes answered and the CPU seconds they took."""
    text = client.get("/metrics").text
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("audimeter_metrics_")
    )
    return (
        float(values["audimeter_metrics_scrapes_total"]),
        float(values["audimeter_metrics_scrape_cpu_seconds_total"]),
    )


def listeners(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("audimeter_listeners{")
    )


def measure(args: argparse.Namespace, directory: Path, icecast: int, matomo: int) -> None:
    port = free_port()
    config = write_config(directory, icecast, matomo, f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    log_path = directory / "audimeter.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "audimeter", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    matomo_url = f"http://127.0.0.1:{matomo}"
    started = time.monotonic()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        while time.monotonic() - started < WARMUP_CAP:
            time.sleep(1)
            if daemon.poll() is not None:
                break
            warm = time.monotonic() - started >= args.warmup
            if warm and matomo_tally(matomo_url).requests >= LISTENERS:
                break
        if daemon.poll() is not None:
            print(f"FAIL: the daemon exited with status {daemon.returncode}")
            print(log_path.read_text(encoding="utf-8", errors="replace")[-3000:])
            return
        first = client.get("/metrics").text
        print(
            f"cold start: {time.monotonic() - started:.0f} s; /metrics shows "
            f"{listeners(first):.0f} listeners in {len(first)} bytes, "
            f"{len(first.splitlines())} lines"
        )

        quiet, _ = cpu_rate(daemon.pid, args.window, None)
        before = scrape_cost(client)
        scraped, count = cpu_rate(daemon.pid, args.window, client)
        after = scrape_cost(client)
        scrapes = after[0] - before[0]
        per_scrape = (after[1] - before[1]) / scrapes
        added = per_scrape * 100  # one scrape a second
        print(
            f"windows of {args.window:g} s: daemon CPU {quiet * 100:.1f}% of one core without "
            f"scraping, {scraped * 100:.1f}% with {count} scrapes (one a second); difference "
            f"{(scraped - quiet) * 100:+.1f} points (the daemon's own work varies as much)"
        )
        print(
            f"/metrics handler: {per_scrape * 1000:.2f} ms of CPU per scrape over {scrapes:.0f} "
            f"scrapes (collecting and rendering; HTTP parsing and writing not included)"
        )
    finally:
        client.close()
        print(f"daemon: {stop_daemon(daemon)}")
    verdict = "PASS" if added <= TARGET else "FAIL"
    print(f"{verdict}: scraping once a second adds {added:.2f}% of one core (target {TARGET:g}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--warmup", type=float, default=25.0, help="seconds to skip at least")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    with (
        servers(args.seed) as (icecast, matomo),
        tempfile.TemporaryDirectory(prefix="audimeter-scrape-") as tmp,
    ):
        measure(args, Path(tmp), icecast, matomo)


if __name__ == "__main__":
    main()
