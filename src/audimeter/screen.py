"""The screens of `audimeter status` (printed once) and `audimeter top` (live, every second).

`top` puts the terminal in cbreak mode to read `q` without Enter and shows its screen on the
alternate screen; both are undone in a `finally`, also on Ctrl-C and SIGTERM, so the shell gets
its terminal back as it was.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable, Sequence
from datetime import datetime
from types import FrameType
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from audimeter.status import SPARK_MINUTES, Snapshot, StatusError

BARS = "▁▂▃▄▅▆▇█"
REFRESH = 1.0
"""Seconds between two screens of `top`."""


def ago(seconds: float) -> str:
    """A short age: "4 s", "12 min", "3 h 5 min", "2 d 4 h"."""
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172_800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def sparkline(values: list[int]) -> str:
    """One character per value, from ▁ (zero) to █ (the highest)."""
    top = max(values, default=0)
    if top == 0:
        return BARS[0] * len(values)
    return "".join(BARS[round(v / top * (len(BARS) - 1))] for v in values)


def _table(title: str, words: Sequence[str], numbers: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=False)
    for column in words:
        table.add_column(column, no_wrap=True)
    for column in numbers:
        table.add_column(column, justify="right", no_wrap=True)
    return table


def status_screen(
    snapshot: Snapshot, zone: ZoneInfo, *, live_width: int | None = None
) -> RenderableType:
    """Run, sources, mounts, outputs and the verdict; with `live_width` (the terminal's width),
    `top`'s activity columns too, the sparkline cut to the minutes that fit beside the rest."""
    now = snapshot.now
    clock = datetime.fromtimestamp(now, zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    if snapshot.loop_beat is None:
        run = "main loop: not running"
    else:
        since = datetime.fromtimestamp(snapshot.started_at or now, zone).strftime("%Y-%m-%d %H:%M")
        run = f"main loop: last round {ago(now - snapshot.loop_beat)} ago, running since {since}"
    head = Text(f"audimeter  {clock}\n{run}", style="bold")

    sources = _table("Sources", ["source", "kind", "server"], ["last good poll"])
    sources.add_column("problem")
    for s in snapshot.sources:
        last = "never" if s.last_ok is None else f"{ago(now - s.last_ok)} ago"
        sources.add_row(s.name, s.kind, s.software or "-", last, s.problem or "")

    mounts = _mounts(snapshot, live_width)

    outputs = _table("Outputs", ["output"], ["pending", "oldest pending", "dead letters"])
    for o in snapshot.outputs:
        oldest = "-" if o.oldest_pending is None else ago(now - o.oldest_pending)
        outputs.add_row(o.name, str(o.pending), oldest, str(o.dead_letters))

    problems = snapshot.verdict.problems
    verdict = (
        Text("healthy", style="bold green")
        if not problems
        else Text("\n".join(["unhealthy:", *(f"  {p}" for p in problems)]), style="bold red")
    )
    return Group(head, sources, mounts, outputs, verdict)


def _mounts(snapshot: Snapshot, live_width: int | None) -> Table:
    numbers = ["listeners", "sessions today", "hours today"]
    rows = [
        [
            m.source,
            m.mount,
            str(m.listeners),
            str(m.sessions_today),
            f"{m.seconds_today / 3600:.1f}",
        ]
        for m in snapshot.mounts
    ]
    if live_width is None:
        mounts = _table("Mounts", ["source", "mount"], numbers)
    else:
        numbers = ["listeners", "sessions", "hours", "joins", "leaves"]  # short: room for the line
        for cells, m in zip(rows, snapshot.mounts, strict=True):
            cells += [str(m.joins), str(m.leaves)]
        # Each column takes its widest cell and 3 of padding and rule, the sparkline too.
        headings = ["source", "mount", *numbers]
        used = sum(max([len(h)] + [len(r[i]) for r in rows]) + 3 for i, h in enumerate(headings))
        minutes = max(5, min(SPARK_MINUTES, live_width - used - 5))
        for cells, m in zip(rows, snapshot.mounts, strict=True):
            cells.append(sparkline(m.spark)[-minutes:])
        mounts = _table("Mounts", ["source", "mount"], numbers)
        mounts.add_column("last hour" if minutes == SPARK_MINUTES else f"last {minutes} min")
        mounts.caption = (
            "sessions, hours: today; joins, leaves: the last minute; then listeners each minute"
        )
        mounts.caption_justify = "left"
    for cells in rows:
        mounts.add_row(*cells)
    return mounts


class _Stop(Exception):
    """SIGTERM while `top` runs."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run_top(read: Callable[[float], Snapshot], zone: ZoneInfo) -> None:
    """Show `read(now)` every `REFRESH` seconds until `q`, Ctrl-C or SIGTERM."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        tty.setcbreak(fd)
        with Live(screen=True, auto_refresh=False) as live:
            while True:
                try:
                    screen = status_screen(read(time.time()), zone, live_width=live.console.width)
                except StatusError as exc:
                    screen = Text(str(exc), style="bold red")
                live.update(
                    Group(screen, Text("q: quit", style="dim")),
                    refresh=True,
                )
                if _quit_pressed(fd, REFRESH):
                    return
    except (KeyboardInterrupt, _Stop):
        return
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGTERM, previous)


def _quit_pressed(fd: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for a key; True when it is q."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            key = os.read(fd, 1)
            if key in (b"q", b"Q", b""):  # "" is the end of input: nobody left to press q
                return True
    return False
