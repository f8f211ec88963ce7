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
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from audimeter.status import Snapshot, StatusError

BARS = "▁▂▃▄▅▆▇█"


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


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=False)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < 2 else "right", no_wrap=i < 2)
    return table


def status_screen(snapshot: Snapshot, zone: ZoneInfo, *, live: bool = False) -> RenderableType:
    """Run, sources, mounts, outputs and the verdict; `live` adds `top`'s activity columns."""
    now = snapshot.now
    clock = datetime.fromtimestamp(now, zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    if snapshot.loop_beat is None:
        run = "main loop: not running"
    else:
        since = datetime.fromtimestamp(snapshot.started_at or now, zone).strftime("%Y-%m-%d %H:%M")
        run = f"main loop: last round {ago(now - snapshot.loop_beat)} ago, running since {since}"
    head = Text(f"audimeter  {clock}  {run}", style="bold")

    sources = _table("Sources", "source", "kind", "server", "last good poll", "problem")
    for s in snapshot.sources:
        last = "never" if s.last_ok is None else f"{ago(now - s.last_ok)} ago"
        sources.add_row(s.name, s.kind, s.software or "-", last, s.problem or "")

    columns = ["source", "mount", "listeners", "sessions today", "hours today"]
    if live:
        columns += ["joins 1 min", "leaves 1 min", "last hour"]
    mounts = _table("Mounts", *columns)
    for m in snapshot.mounts:
        cells = [m.source, m.mount, str(m.listeners), str(m.sessions_today)]
        cells.append(f"{m.seconds_today / 3600:.1f}")
        if live:
            cells += [str(m.joins), str(m.leaves), sparkline(m.spark)]
        mounts.add_row(*cells)

    outputs = _table("Outputs", "output", "pending", "oldest pending", "dead letters")
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


class _Stop(Exception):
    """SIGTERM while `top` runs."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run_top(
    read: Callable[[float], Snapshot],
    zone: ZoneInfo,
    console: Console | None = None,
    interval: float = 1.0,
) -> None:
    """Show `read(now)` every `interval` seconds until `q`, Ctrl-C or SIGTERM."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        tty.setcbreak(fd)
        with Live(console=console or Console(), screen=True, auto_refresh=False) as live:
            while True:
                try:
                    screen = status_screen(read(time.time()), zone, live=True)
                except StatusError as exc:
                    screen = Text(str(exc), style="bold red")
                live.update(
                    Group(screen, Text("q: quit", style="dim")),
                    refresh=True,
                )
                if _quit_pressed(fd, interval):
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
