"""The HTML report in a real headless Chromium: offline, no requests, no errors, charts drawn.

Set AUDIMETER_REPORT_SCREENSHOT=docs/report.png to also save the screenshot there (docs/reports.md
shows it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import ConsoleMessage, Request, sync_playwright

from tests.support.history import station_history, write_config, write_history

CHROMIUM = "/usr/bin/chromium"
# As the machine's notes say: without the background-networking flags Chromium tries to reach
# Google's hosts at start; those would be requests the page did not make, but noise all the same.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def html_report(tmp_path: Path) -> Path:
    state = tmp_path / "state.db"
    write_history(
        state, station_history(date(2025, 3, 24), 7, 40_000, ZoneInfo("Europe/Berlin"), seed=7)
    )
    config = write_config(tmp_path, state)
    out = tmp_path / "report.html"
    subprocess.run(
        [sys.executable, "-m", "audimeter", "report", "--config", str(config),
         "--from", "2025-03-24", "--to", "2025-03-30", "--timezone", "Europe/Berlin",
         "--by", "daypart", "--format", "html", "--output", str(out)],
        check=True, timeout=120,
    )  # fmt: skip
    return out


@pytest.mark.chromium
def test_html_report_in_chromium(html_report: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (Debian package chromium)")
    requests: list[str] = []
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    def on_request(request: Request) -> None:
        requests.append(request.url)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("request", on_request)
        page.goto(html_report.as_uri(), wait_until="load")
        sizes = page.evaluate(
            """() => [...document.querySelectorAll('svg')].map(svg => {
                const box = svg.getBoundingClientRect();
                return [svg.id, box.width, box.height, svg.querySelectorAll('*').length];
            })"""
        )
        drawn = page.evaluate(
            """() => ({
                line: document.querySelector('#listeners polyline').getTotalLength(),
                cells: document.querySelectorAll('#heatmap rect').length,
                bars: [...document.querySelectorAll('#durations rect')]
                    .map(r => r.getBoundingClientRect().height),
                rows: document.querySelectorAll('table tr').length,
            })"""
        )
        screenshot = tmp_path / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert problems == []
    assert requests == [html_report.as_uri()]  # the file itself, nothing else
    assert [name for name, *_ in sizes] == ["listeners", "heatmap", "durations"]
    for name, width, height, elements in sizes:
        assert width > 500, name
        assert height > 100, name
        assert elements > 10, name
    assert drawn["line"] > 1000  # a curve across the chart, not a flat stub
    assert drawn["cells"] == 7 * 24
    assert len(drawn["bars"]) == 6
    assert all(height > 0 for height in drawn["bars"])
    assert drawn["rows"] == 1 + 6 + 1  # header, the six standard dayparts, the total
    assert screenshot.stat().st_size > 50_000
    if target := os.environ.get("AUDIMETER_REPORT_SCREENSHOT"):
        shutil.copyfile(screenshot, target)
