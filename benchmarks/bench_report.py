"""Benchmark: `audimeter report --by day` on a month of a busy station (1,000,000 sessions).

Target: at most 5 s and 300 MB. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from audimeter.reports.periods import local_midnight

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    source TEXT, mount TEXT, site_id INTEGER, visitor_id TEXT, started_at INTEGER,
    ended_at INTEGER, seconds INTEGER, reason TEXT, user_agent TEXT, referrer TEXT
)
"""

# Share of a weekday's session starts in each local hour: a quiet night, a morning-drive peak,
# a long working day and a second peak in the afternoon drive.
WEEKDAY_CURVE = [
    0.9, 0.6, 0.4, 0.4, 0.6, 1.6, 4.0, 6.5, 7.0, 6.0, 5.4, 5.2,
    5.4, 5.2, 5.3, 5.8, 6.4, 6.6, 5.6, 4.4, 3.6, 3.0, 2.4, 1.6,
]  # fmt: skip
WEEKEND_CURVE = [
    1.4, 1.0, 0.7, 0.5, 0.5, 0.7, 1.2, 2.2, 3.6, 4.8, 5.6, 6.0,
    6.0, 5.8, 5.6, 5.4, 5.4, 5.4, 5.0, 4.6, 4.0, 3.4, 2.6, 2.0,
]  # fmt: skip
MOUNTS = ("/live.mp3", "/live.aac", "/talk.mp3")
MOUNT_SHARES = (0.62, 0.28, 0.10)
USER_AGENTS = ("VLC/3.0.20 LibVLC/3.0.20", "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15", "Winamp")


def station_history(
    first: date, days: int, sessions: int, zone: ZoneInfo, seed: int = 1
) -> list[tuple[str, str, int, str, int, int, int, str, str, str]]:
    """A station's sessions: starts following the daily curve in the zone, lengths from a second
    to hours (about 15% under a minute), returning listeners (a few listen daily, most rarely)
    and look-alikes (a second listener with the same address and player, its own visitor id)."""
    rng = np.random.default_rng(seed)
    day_starts = np.array([local_midnight(first + timedelta(d), zone) for d in range(days + 1)])
    weekend = np.array([(first + timedelta(d)).weekday() >= 5 for d in range(days)])
    weights = (
        np.where(weekend[:, None], WEEKEND_CURVE, WEEKDAY_CURVE)
        * np.where(weekend, 0.8, 1.0)[:, None]
    )
    cells = rng.choice(days * 24, size=sessions, p=(weights / weights.sum()).ravel())
    day, hour = cells // 24, cells % 24
    # Hours counted from local midnight; clock changes shift the curve by an hour on one day.
    length_of_day = day_starts[1:] - day_starts[:-1]
    offset = np.minimum(hour * 3600 + rng.integers(0, 3600, sessions), length_of_day[day] - 1)
    starts = day_starts[day] + offset
    seconds = np.where(
        rng.random(sessions) < 0.15,
        rng.integers(1, 60, sessions),
        np.minimum(np.exp(rng.normal(np.log(1500), 1.1, sessions)), 8 * 3600).astype(np.int64),
    )
    seconds = np.maximum(seconds, 60, where=seconds >= 60, out=seconds.copy())
    listeners = max(1, sessions // 6)
    visitor = (rng.pareto(1.2, sessions) * listeners / 20).astype(np.int64) % listeners
    look_alike = rng.random(sessions) < 0.02
    visitor = np.where(look_alike, listeners + np.arange(sessions), visitor)
    mount = rng.choice(len(MOUNTS), size=sessions, p=MOUNT_SHARES)
    return [
        (
            "main",
            MOUNTS[m],
            1,
            f"{v:016x}",
            int(s),
            int(s + n),
            int(n),
            "gone",
            USER_AGENTS[v % len(USER_AGENTS)],
            "",
        )
        for s, n, v, m in zip(
            starts.tolist(), seconds.tolist(), visitor.tolist(), mount.tolist(), strict=True
        )
    ]


def write_history(
    path: Path, rows: list[tuple[str, str, int, str, int, int, int, str, str, str]]
) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(HISTORY_SCHEMA)
    with db:
        db.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.close()


def write_config(directory: Path, state: Path) -> Path:
    config = directory / "audimeter.toml"
    config.write_text(
        f'[state]\npath = "{state}"\n\n[[sources]]\nname = "main"\nkind = "icecast"\n'
        'url = "http://127.0.0.1:8000"\npassword = "hackme"\n'
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timezone", default="Europe/Berlin")
    args = parser.parse_args()
    first, days = date(2025, 3, 1), 31
    zone = ZoneInfo(args.timezone)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        state = directory / "audimeter.db"
        began = time.perf_counter()
        rows = station_history(first, days, args.sessions, zone)
        write_history(state, rows)
        del rows
        print(
            f"generated {args.sessions:,} sessions of {days} days in "
            f"{time.perf_counter() - began:.1f} s ({state.stat().st_size / 2**20:.0f} MiB)"
        )
        config = write_config(directory, state)
        command = [
            sys.executable, "-m", "audimeter", "report", "--config", str(config),
            "--from", first.isoformat(), "--to", (first + timedelta(days - 1)).isoformat(),
            "--timezone", args.timezone, "--by", "day", "--format", "json",
        ]  # fmt: skip
        times: list[float] = []
        peaks: list[float] = []
        for run in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            began = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - began
            # ru_maxrss of children is the largest of any child so far (KiB on Linux).
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            if done.returncode != 0:
                print(f"FAIL report exited {done.returncode}: {done.stderr.strip()}")
                return
            result = json.loads(done.stdout)
            totals = result["totals"]
            print(
                f"run {run + 1}: {elapsed:.2f} s, peak RSS {peak:.0f} MiB"
                f"{' (or less: a peak of an earlier run)' if before / 1024 >= peak else ''}; "
                f"{len(result['rows'])} rows, sessions {totals['sessions']:,}, cume "
                f"{totals['cume']:,}, TLH {totals['tlh']:,.0f}, AQH {totals['aqh']:,.1f}, "
                f"peak {totals['peak']:,} at {totals['peak_at']}"
            )
            times.append(elapsed)
            peaks.append(peak)
    median = statistics.median(times)
    print(f"{'PASS' if median <= 5 else 'FAIL'} time: median {median:.2f} s (target <= 5 s)")
    print(
        f"{'PASS' if max(peaks) <= 300 else 'FAIL'} memory: peak RSS {max(peaks):.0f} MiB "
        "(target <= 300 MB)"
    )


if __name__ == "__main__":
    main()
