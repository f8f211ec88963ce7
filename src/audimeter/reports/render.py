"""A report as JSON, CSV or a terminal table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Hashable
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from audimeter.reports.metrics import Metrics, Report, buckets
from audimeter.reports.periods import iso
from audimeter.reports.titles import TitleMetrics

METRICS = (
    "sessions",
    "active_sessions",
    "seconds",
    "tlh",
    "aas",
    "atsl",
    "cume",
    "tsl",
    "aqh",
    "peak",
    "peak_at",
    "short_sessions",
)


TITLE_FIELDS = (
    "plays",
    "airtime",
    "seconds",
    "tlh",
    "aas",
    "sessions",
    "listeners_at_start",
    "avg_listeners_at_start",
    "tune_outs",
    "tune_out_rate",
)
"""The numbers of a title (`--by title`), in `rows` instead of METRICS."""


def title_dict(metrics: TitleMetrics) -> dict[str, Any]:
    return {name: getattr(metrics, name) for name in TITLE_FIELDS}


def metrics_dict(metrics: Metrics, report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(metrics, name) for name in METRICS}
    if metrics.peak_at is not None:
        out["peak_at"] = iso(metrics.peak_at, report.grid.zone)
    out["durations"] = dict(metrics.durations)
    return out


def to_json(report: Report) -> str:
    document = {
        "from": report.grid.first.isoformat(),
        "to": report.grid.last.isoformat(),
        "timezone": report.grid.zone.key,
        "min_session": report.min_session,
        "by": report.by,
        "totals": metrics_dict(report.totals, report),
        "rows": [{"key": key, **metrics_dict(m, report)} for key, m in report.rows]
        + [{"key": key, **title_dict(m)} for key, m in report.titles],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def to_csv(report: Report) -> str:
    """One header row; the totals first (by = "total", empty key), then one row per key. By
    title: the numbers of each title only (totals are other numbers)."""
    names = [name for name, _ in buckets(report.min_session)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if report.by == "title":
        writer.writerow(["by", "key", *TITLE_FIELDS])
        for name, numbers in report.titles:
            writer.writerow(["title", name, *title_dict(numbers).values()])
        return out.getvalue()
    writer.writerow(["by", "key", *METRICS, *(f"durations_{n}" for n in names)])
    lines: list[tuple[str, Hashable, Metrics]] = [("total", "", report.totals)]
    lines += [(report.by or "", key, m) for key, m in report.rows]
    for by, key, metrics in lines:
        values = metrics_dict(metrics, report)
        writer.writerow(
            [by, key, *(values[n] if values[n] is not None else "" for n in METRICS)]
            + [metrics.durations[n] for n in names]
        )
    return out.getvalue()


def duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _cells(metrics: Metrics, report: Report) -> list[str]:
    peak_at = "" if metrics.peak_at is None else iso(metrics.peak_at, report.grid.zone)[:16]
    return [
        f"{metrics.sessions:,}",
        f"{metrics.active_sessions:,}",
        f"{metrics.tlh:,.1f} h",
        f"{metrics.aas:,.2f}",
        duration(metrics.atsl),
        f"{metrics.cume:,}",
        duration(metrics.tsl),
        f"{metrics.aqh:,.2f}",
        f"{metrics.peak:,}",
        peak_at.replace("T", " "),
        f"{metrics.short_sessions:,}",
    ]


def _titles_table(report: Report) -> Table:
    table = Table(title="Titles on air", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("title", style="bold", overflow="fold", max_width=60)
    headers = ("plays", "airtime", "TLH", "AAS", "sessions", "at start", "avg", "tune-outs", "rate")
    for header in headers:
        table.add_column(header, justify="right")
    for key, m in report.titles:
        table.add_row(
            key,
            f"{m.plays:,}",
            duration(m.airtime),
            f"{m.tlh:,.2f} h",
            f"{m.aas:,.2f}",
            f"{m.sessions:,}",
            f"{m.listeners_at_start:,}",
            f"{m.avg_listeners_at_start:,.1f}",
            f"{m.tune_outs:,}",
            f"{m.tune_out_rate:.1%}",
        )
    return table


def to_table(report: Report, width: int | None = None) -> str:
    grid = report.grid
    title = (
        f"{grid.first.isoformat()} to {grid.last.isoformat()} ({grid.zone.key}), "
        f"sessions of {report.min_session} s and more"
    )
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column(report.by or "", style="bold")
    for header in (
        "sessions",
        "active",
        "TLH",
        "AAS",
        "ATSL",
        "cume",
        "TSL",
        "AQH",
        "peak",
        "peak at",
        "short",
    ):
        table.add_column(header, justify="right")
    for key, metrics in report.rows:
        table.add_row(str(key), *_cells(metrics, report))
    table.add_row("total", *_cells(report.totals, report), style="bold", end_section=True)
    names = [name for name, _ in buckets(report.min_session)]
    spread = Table(title="Session lengths (sessions started)", box=box.SIMPLE_HEAD)
    spread.title_justify = "left"
    spread.add_column(report.by or "", style="bold")
    for name in names:
        spread.add_column(name, justify="right")
    for key, metrics in report.rows:
        spread.add_row(str(key), *(f"{metrics.durations[n]:,}" for n in names))
    spread.add_row("total", *(f"{report.totals.durations[n]:,}" for n in names), style="bold")
    out = io.StringIO()
    console = Console(file=out, width=width or 160, color_system=None, highlight=False)
    if report.by == "title":
        console.print(_titles_table(report))
    console.print(table)
    console.print(spread)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"
