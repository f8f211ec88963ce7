"""`audimeter status` and `audimeter top` against a real `audimeter run` following a real Icecast:
healthy while it answers, unhealthy once Icecast is silent past the outage grace, "not running"
once the run stopped; `top` in a real terminal (tmux)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from audimeter.config import load_config
from audimeter.status import Snapshot, StatusError, read_snapshot
from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient

from .conftest import MOUNT
from .test_core import VLC, write_config

pytestmark = pytest.mark.icecast

GRACE = 2


def status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audimeter", "status", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def snapshot(config: Path) -> tuple[int, dict[str, Any]]:
    result = status(config, "--format", "json")
    return result.returncode, json.loads(result.stdout)


def read(config: Path) -> Snapshot | None:
    """What `status` shows, read in this process (waits ask often); None before the state file
    exists."""
    loaded = load_config(config)
    try:
        return read_snapshot(loaded.state.path, loaded, time.time())
    except StatusError:
        return None


def listeners(config: Path) -> int | None:
    snapshot = read(config)
    return None if snapshot is None else sum(m.listeners for m in snapshot.mounts)


def unhealthy(config: Path) -> bool:
    snapshot = read(config)
    return snapshot is not None and not snapshot.verdict.healthy


def test_status_follows_the_run_and_its_source(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient
) -> None:
    lines = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path, icecast, None, f'[jsonl]\npath = "{lines}"\n', outage_grace=GRACE
    )
    with AudimeterProcess(config) as daemon:
        with (
            Listener(icecast, MOUNT, bind="127.0.0.31", user_agent=VLC),
            Listener(icecast, MOUNT, bind="127.0.0.32", user_agent=VLC),
        ):
            wait_for(lambda: listeners(config) == 2, 10, "two listeners in the status")
            code, document = snapshot(config)
            assert (code, document["healthy"], document["problems"]) == (0, True, [])
            (main,) = document["sources"]
            assert main["software"].startswith("Icecast")
            assert main["last_ok_age"] <= 1 + 5  # polled twice a second, written every 5 s
            (mount,) = document["mounts"]
            assert (mount["mount"], mount["sessions_today"]) == (MOUNT, 2)
            text = status(config)
            assert text.returncode == 0, text.stdout
            assert MOUNT in text.stdout
            assert text.stdout.splitlines()[-1] == "healthy"
        wait_for(lambda: listeners(config) == 0, 10, "the listeners gone")
        icecast.stop()
        wait_for(lambda: unhealthy(config), GRACE + 10, "unhealthy past the grace")
        failing = status(config)
        assert failing.returncode == 1
        assert "source main: no good poll for" in failing.stdout
        assert f"(outage grace {GRACE} s)" in failing.stdout
        stored = read(config)
        assert stored is not None
        assert (stored.sources[0].problem or "").startswith("source main (http://127.0.0.1:")
        assert daemon.stop()[0] == 0
    stopped = status(config)
    assert stopped.returncode == 1
    assert "main loop: not running" in stopped.stdout
    assert "no good poll" not in stopped.stdout  # a stopped run polls nothing: no blame


def test_state_file_and_usage_problems_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "audimeter.toml"
    config.write_text(
        f'[state]\npath = "{tmp_path / "none.db"}"\n[[sources]]\nname = "main"\n'
        'kind = "icecast"\nurl = "http://127.0.0.1:1"\npassword = "secret-pw"\n'
    )
    config.chmod(0o600)
    missing = status(config)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.startswith("audimeter: there is no state file")
    assert len(missing.stderr.splitlines()) == 1
    bad = status(config, "--format", "yaml")
    assert bad.returncode == 2
    piped = subprocess.run(
        [sys.executable, "-m", "audimeter", "top", "--config", str(config)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert piped.returncode == 2
    assert piped.stderr == (
        "audimeter: top needs a terminal; in scripts use `audimeter status --format json`\n"
    )


def tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", "audimeter-test", *args], capture_output=True, text=True, check=True
    ).stdout


def test_top_in_a_real_terminal(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient
) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (Debian package tmux)")
    lines = tmp_path / "events.jsonl"
    config = write_config(tmp_path, icecast, None, f'[jsonl]\npath = "{lines}"\n')
    done = tmp_path / "top.exit"
    with (
        AudimeterProcess(config),
        Listener(icecast, MOUNT, bind="127.0.0.33", user_agent=VLC),
        Listener(icecast, MOUNT, bind="127.0.0.34", user_agent=VLC),
        Listener(icecast, MOUNT, bind="127.0.0.35", user_agent=VLC),
    ):
        wait_for(lambda: listeners(config) == 3, 10, "three listeners in the state file")
        modes = tmp_path / "before", tmp_path / "after"  # the terminal's, as stty shows them
        command = (
            f"stty -g > {modes[0]}; {sys.executable} -m audimeter top --config {config}; "
            f"echo $? > {done}; stty -g > {modes[1]}; echo TOP-ENDED; sleep 30"
        )
        tmux("new-session", "-d", "-s", "top", "-x", "140", "-y", "40", command)
        try:
            screen = ""

            def shows_the_listeners() -> bool:
                nonlocal screen
                screen = tmux("capture-pane", "-p", "-t", "top")
                row = next((line for line in screen.splitlines() if MOUNT in line), "")
                return row.split()[2:5] == ["3", "3", "0.0"] if row else False

            try:
                wait_for(shows_the_listeners, 15, "the mount with 3 listeners on the screen")
            except AssertionError:
                raise AssertionError(
                    f"no mount with 3 listeners on the screen:\n{screen}"
                ) from None
            assert "main loop: last round" in screen
            assert "Icecast" in screen
            assert [line.strip() for line in screen.splitlines() if line.strip()][-2:] == [
                "healthy",
                "q: quit",
            ]
            started = time.monotonic()
            tmux("send-keys", "-t", "top", "q")
            wait_for(done.exists, 5, "top to exit on q")
            assert time.monotonic() - started < 3
            assert done.read_text().strip() == "0"
            wait_for(lambda: "TOP-ENDED" in tmux("capture-pane", "-p", "-t", "top"), 5, "shell")
            after = tmux("capture-pane", "-p", "-t", "top")
            assert MOUNT not in after  # the alternate screen is gone, the shell's is back
            assert modes[1].read_text() == modes[0].read_text()  # cbreak mode undone
        finally:
            subprocess.run(["tmux", "-L", "audimeter-test", "kill-server"], check=False)
