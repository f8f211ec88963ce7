"""A report as one self-contained HTML page: inline CSS and SVG charts, no script, no requests."""

from __future__ import annotations

from html import escape

import numpy as np

from audimeter.reports.dayparts import WEEKDAYS
from audimeter.reports.metrics import Metrics, Report, buckets
from audimeter.reports.periods import iso
from audimeter.reports.render import duration

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;
background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#5b6475;margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(115px,1fr));gap:10px}
.card{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0001}
.card b{display:block;font-size:22px}.card span{color:#5b6475;font-size:13px}
figure{background:#fff;border-radius:8px;margin:0;padding:12px;box-shadow:0 1px 2px #0001}
svg{display:block;width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#5b6475}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px;
font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;text-align:right;border-bottom:1px solid #e4e7ec}
th:first-child,td:first-child{text-align:left}tr.total td{font-weight:600}
.wide{overflow-x:auto}
"""
INK = "#2f6fd6"


def _number(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _nice(top: float) -> float:
    """A round axis maximum at or above top."""
    if top <= 0:
        return 1.0
    step = 10 ** np.floor(np.log10(top))
    for factor in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if factor * step >= top:
            return float(factor * step)
    return float(10 * step)


def _listeners_chart(report: Report) -> str:
    width, height, left, bottom, top = 1000, 260, 48, 24, 10
    values = report.listeners.astype(np.float64)
    bounds = report.grid.bounds
    # At most one point per 2 px: the mean of the quarter hours it stands for.
    points = max(1, min(len(values), (width - left) // 2))
    edges = np.linspace(0, len(values), points + 1).astype(np.int64)
    edges = np.unique(edges)
    means = np.add.reduceat(values, edges[:-1]) / np.diff(edges)
    ymax = _nice(float(means.max()) if means.size else 0.0)
    span = max(1, int(bounds[-1] - bounds[0]))
    mid = (bounds[edges[:-1]] + bounds[edges[1:]]) / 2

    def x(instant: float) -> float:
        return float(left + (instant - bounds[0]) / span * (width - left - 4))

    def y(value: float) -> float:
        return float(top + (1 - value / ymax) * (height - top - bottom))

    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(mid, means, strict=True))
    area = f"{x(mid[0]):.1f},{y(0):.1f} {line} {x(mid[-1]):.1f},{y(0):.1f}"
    parts = [
        f'<svg id="listeners" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="Listeners through the period">'
    ]
    for i in range(5):
        value = ymax * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#e4e7ec"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{_number(value, 0 if ymax >= 8 else 1)}</text>"
        )
    days = (report.grid.last - report.grid.first).days + 1
    every = max(1, -(-days // 10))
    for index in range(0, days, every):
        start = bounds[np.argmax(report.grid.day == index)]
        label = report.grid.first.toordinal() + index
        text = type(report.grid.first).fromordinal(label).strftime("%b %d")
        parts.append(
            f'<line x1="{x(start):.1f}" x2="{x(start):.1f}" y1="{top}" y2="{height - bottom}" '
            f'stroke="#eef0f3"/><text x="{x(start) + 3:.1f}" y="{height - 6}">{text}</text>'
        )
    parts.append(f'<polygon points="{area}" fill="{INK}" fill-opacity="0.18"/>')
    parts.append(f'<polyline points="{line}" fill="none" stroke="{INK}" stroke-width="1.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def _heat_color(share: float) -> str:
    """From a pale to a deep blue."""
    light = 96 - 58 * share
    return f"hsl(216,{55 + 20 * share:.0f}%,{light:.0f}%)"


def _heatmap(report: Report) -> str:
    grid, listeners = report.grid, report.listeners
    cell_w, cell_h, left, top = 38, 26, 44, 18
    sums = np.zeros((7, 24))
    counts = np.zeros((7, 24))
    np.add.at(sums, (grid.weekday, grid.minute // 60), listeners)
    np.add.at(counts, (grid.weekday, grid.minute // 60), 1)
    aqh = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    peak = float(aqh.max()) or 1.0
    width, height = left + 24 * cell_w, top + 7 * cell_h + 2
    parts = [
        f'<svg id="heatmap" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="AQH by hour of day and weekday">'
    ]
    for hour in range(0, 24, 2):
        parts.append(f'<text x="{left + hour * cell_w + 2}" y="12">{hour:02d}:00</text>')
    for day in range(7):
        y = top + day * cell_h
        parts.append(f'<text x="0" y="{y + 17}">{WEEKDAYS[day][:3]}</text>')
        for hour in range(24):
            value = aqh[day, hour]
            x = left + hour * cell_w
            if not counts[day, hour]:
                fill, label = "#f0f1f4", "not in the period"
            else:
                fill, label = _heat_color(value / peak), f"AQH {value:,.2f}"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" rx="3" '
                f'fill="{fill}"><title>{WEEKDAYS[day]} {hour:02d}:00: {label}</title></rect>'
            )
            if counts[day, hour] and value >= 0.5:
                color = "#fff" if value / peak > 0.55 else "#1d2433"
                parts.append(
                    f'<text x="{x + (cell_w - 2) / 2}" y="{y + 17}" text-anchor="middle" '
                    f'style="fill:{color}">{value:,.0f}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def _durations_chart(report: Report) -> str:
    names = [name for name, _ in buckets(report.min_session)]
    counts = [report.totals.durations[n] for n in names]
    width, height, top, bottom = 1000, 200, 20, 26
    ymax = _nice(max(counts, default=0))
    slot = width / len(names)
    parts = [
        f'<svg id="durations" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="Sessions by length">'
    ]
    total = sum(counts) or 1
    for i, (name, count) in enumerate(zip(names, counts, strict=True)):
        bar = (height - top - bottom) * count / ymax
        x = i * slot + slot * 0.15
        y = height - bottom - bar
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{max(bar, 1):.1f}" '
            f'fill="{INK}"><title>{name}: {count:,} sessions</title></rect>'
            f'<text x="{x + slot * 0.35:.1f}" y="{y - 4:.1f}" text-anchor="middle">'
            f"{count:,} ({count / total:.0%})</text>"
            f'<text x="{x + slot * 0.35:.1f}" y="{height - 8}" text-anchor="middle">{name}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


HEADERS = ("sessions", "active", "TLH (h)", "AAS", "ATSL", "cume", "TSL", "AQH", "peak", "peak at")


def _cells(metrics: Metrics, report: Report) -> str:
    peak_at = "" if metrics.peak_at is None else iso(metrics.peak_at, report.grid.zone)[:16]
    cells = (
        _number(metrics.sessions),
        _number(metrics.active_sessions),
        _number(metrics.tlh, 1),
        _number(metrics.aas, 2),
        duration(metrics.atsl),
        _number(metrics.cume),
        duration(metrics.tsl),
        _number(metrics.aqh, 2),
        _number(metrics.peak),
        peak_at.replace("T", " "),
    )
    return "".join(f"<td>{escape(c)}</td>" for c in cells)


TITLE_HEADERS = (
    *("plays", "airtime", "TLH (h)", "AAS", "sessions"),
    *("listeners at start", "avg at start", "tune-outs", "tune-out rate"),
)


def _titles_table(report: Report) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("title", *TITLE_HEADERS))
    rows = []
    for key, m in report.titles:
        cells = (
            key,
            _number(m.plays),
            duration(m.airtime),
            _number(m.tlh, 2),
            _number(m.aas, 2),
            _number(m.sessions),
            _number(m.listeners_at_start),
            _number(m.avg_listeners_at_start, 1),
            _number(m.tune_outs),
            f"{m.tune_out_rate:.1%}",
        )
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return f'<div class="wide"><table><tr>{head}</tr>{"".join(rows)}</table></div>'


def _table(report: Report) -> str:
    if report.by == "title":
        return _titles_table(report)
    head = "".join(f"<th>{h}</th>" for h in (escape(report.by or ""), *HEADERS))
    rows = [f"<tr><td>{escape(str(k))}</td>{_cells(m, report)}</tr>" for k, m in report.rows]
    rows.append(f'<tr class="total"><td>total</td>{_cells(report.totals, report)}</tr>')
    return f'<div class="wide"><table><tr>{head}</tr>{"".join(rows)}</table></div>'


def to_html(report: Report) -> str:
    grid, totals = report.grid, report.totals
    period = f"{grid.first.isoformat()} to {grid.last.isoformat()}"
    cards = (
        ("sessions", _number(totals.sessions)),
        ("cume", _number(totals.cume)),
        ("TLH (hours)", _number(totals.tlh, 1)),
        ("AQH", _number(totals.aqh, 2)),
        ("ATSL", duration(totals.atsl)),
        ("TSL", duration(totals.tsl)),
        ("peak", _number(totals.peak)),
        ("short sessions", _number(totals.short_sessions)),
    )
    card_html = "".join(f'<div class="card"><b>{v}</b><span>{k}</span></div>' for k, v in cards)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Audience report {escape(period)}</title><style>{CSS}</style></head>
<body><main>
<h1>Audience report</h1>
<p class="sub">{escape(period)} ({escape(grid.zone.key)}); sessions of {report.min_session} s
and more count.</p>
<div class="cards">{card_html}</div>
<h2>Listeners through the period (per quarter hour, 5 minutes or more)</h2>
<figure>{_listeners_chart(report)}</figure>
<h2>AQH by hour of day and weekday</h2>
<figure>{_heatmap(report)}</figure>
<h2>Session lengths (sessions started in the period)</h2>
<figure>{_durations_chart(report)}</figure>
<h2>Breakdown{escape(f" by {report.by}") if report.by else ""}</h2>
{_table(report)}
</main></body></html>
"""
