"""The shipped systemd unit: valid for systemd, and what the README and the docs show of it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "contrib" / "audimeter.service"


def unit_lines(text: str) -> set[str]:
    return {line for line in text.splitlines() if line and not line.startswith("#")}


def test_the_unit_shown_is_the_one_shipped() -> None:
    (shown,) = re.findall(
        r"```ini\n(# /etc/systemd/system/audimeter.service\n.*?)```",
        (ROOT / "docs/operations.md").read_text(),
        re.S,
    )
    assert unit_lines(shown) <= unit_lines(UNIT.read_text())
    assert {"Type=notify", "WatchdogSec=30", "ExecReload=/bin/kill -HUP $MAINPID"} <= unit_lines(
        shown
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    audimeter = Path(sys.executable).parent / "audimeter"
    unit = tmp_path / "audimeter.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/audimeter", str(audimeter)))
    checked = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""
