"""Benchmark: `audimeter report --by day` on a month of a busy station (1,000,000 sessions).

Target: at most 5 s and 300 MB. See benchmarks/README.md. `--by title` reports the month's plays
of the titles on air (about 35,000) instead.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

# The generator is shared with the tests (tests/support/history.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.history import (
    station_history,
    station_plays,
    write_config,
    write_history,
    write_plays,
)


def generate(state: Path, sessions: int, first: date, days: int, zone: str) -> None:
    write_history(state, station_history(first, days, sessions, ZoneInfo(zone)))
    write_plays(state, station_plays(first, days, ZoneInfo(zone)))


def timed(command: list[str], output: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, peak RSS in MiB and exit status of one run of command."""
    began = time.perf_counter()
    with output.open("w") as out:
        child = subprocess.Popen(command, stdout=out)
        # wait4 gives this child's own resource usage; RUSAGE_CHILDREN would mix in others.
        _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, usage.ru_maxrss / 1024, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timezone", default="Europe/Berlin")
    parser.add_argument("--by", default="day")
    args = parser.parse_args()
    first, days = date(2025, 3, 1), 31
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        state = directory / "audimeter.db"
        began = time.perf_counter()
        # In a process of its own: a child forked from a big parent starts with the parent's
        # pages counted in its peak RSS.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(generate, (state, args.sessions, first, days, args.timezone))
        print(
            f"generated {args.sessions:,} sessions of {days} days in "
            f"{time.perf_counter() - began:.1f} s ({state.stat().st_size / 2**20:.0f} MiB)"
        )
        config = write_config(directory, state)
        command = [
            sys.executable, "-m", "audimeter", "report", "--config", str(config),
            "--from", first.isoformat(), "--to", (first + timedelta(days - 1)).isoformat(),
            "--timezone", args.timezone, "--by", args.by, "--format", "json",
        ]  # fmt: skip
        times: list[float] = []
        peaks: list[float] = []
        for run in range(args.runs):
            elapsed, cpu, peak, status = timed(command, directory / "report.json")
            if status != 0:
                print(f"FAIL report exited with status {status}")
                return
            result = json.loads((directory / "report.json").read_text())
            totals = result["totals"]
            print(
                f"run {run + 1}: {elapsed:.2f} s ({cpu:.2f} s of CPU), peak RSS {peak:.0f} MiB; "
                f"{len(result['rows'])} rows, sessions {totals['sessions']:,}, cume "
                f"{totals['cume']:,}, TLH {totals['tlh']:,.0f}, AQH {totals['aqh']:,.1f}, "
                f"peak {totals['peak']:,} at {totals['peak_at']}"
            )
            times.append(elapsed)
            peaks.append(peak)
    median = statistics.median(times)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'PASS' if median <= 5 else 'FAIL'} time: median {median:.2f} s (target <= 5 s)")
    print(
        f"{'PASS' if max(peaks) <= 300 else 'FAIL'} memory: peak RSS {max(peaks):.0f} MiB "
        "(target <= 300 MB)"
    )


if __name__ == "__main__":
    main()
