"""Benchmark: `audimeter report --by day` on a month of a busy station (1,000,000 sessions).

Target: at most 5 s and 300 MB. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import resource
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

from tests.support.history import station_history, write_config, write_history


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
