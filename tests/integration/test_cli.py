"""The `audimeter` command as an operator uses it: check, run without Matomo, errors, help."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient, free_port
from tests.support.matomo import RecordingMatomo

from .conftest import MOUNT
from .test_core import VLC, write_config


def audimeter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audimeter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.icecast
def test_check_passes_against_working_icecast_and_matomo(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    result = audimeter("check", "--config", str(write_config(tmp_path, icecast, matomo)))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok    source main: Icecast 2.4.4 at http://127.0.0.1:")
    assert f"1 mount(s) with 0 listener(s): {MOUNT} (0)" in lines[0]
    assert lines[1:] == [
        f"ok    matomo: Matomo 5.1.0 at {matomo.url}, token accepted",
        "ok    matomo site 1 (matomo.site_id): Site 1; the token may send listener IPs and start"
        " times (write access)",
    ]


@pytest.mark.icecast
def test_check_names_what_is_wrong(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient
) -> None:
    with RecordingMatomo(token_auth="another-token-entirely") as matomo:
        config = write_config(tmp_path, icecast, matomo)
        text = config.read_text().replace(
            f'password = "{icecast.admin_auth[1]}"', 'password = "not-the-password"'
        )
        config.write_text(text)
        result = audimeter("check", "--config", str(config))
    assert result.returncode == 1
    source_line, matomo_line = result.stdout.splitlines()
    assert source_line.startswith("FAIL  source main: (")
    assert "credentials refused (HTTP 401); check username and password" in source_line
    assert matomo_line == (
        f"FAIL  matomo: Matomo at {matomo.url} refused the token (Unable to authenticate with the"
        " provided token. It is either invalid or expired.): set matomo.token_auth to a token"
        " from Matomo > Administration > Personal > Security > Auth tokens"
    )
    assert "not-the-password" not in result.stdout + result.stderr
    assert "0123456789abcdef" not in result.stdout + result.stderr


@pytest.mark.icecast
def test_check_unknown_site_and_unreachable_source(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient
) -> None:
    with RecordingMatomo(site_ids={2}) as matomo:
        config = write_config(tmp_path, icecast, matomo)
        config.write_text(
            config.read_text().replace(icecast.url, f"http://127.0.0.1:{free_port()}")
        )
        result = audimeter("check", "--config", str(config))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "unreachable (connection refused or no route)" in lines[0]
    assert lines[1].startswith("ok    matomo: Matomo 5.1.0")
    assert lines[2:] == [
        "FAIL  matomo site 1 (matomo.site_id): no such site, or the token's user has no access to"
        " it: give it write access in Matomo > Administration > Users, or change the site id in"
        " the configuration"
    ]


@pytest.mark.icecast
def test_without_matomo_sessions_are_printed_as_json_lines(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient
) -> None:
    with AudimeterProcess(write_config(tmp_path, icecast, None)) as run:
        with Listener(icecast, MOUNT, bind="127.0.0.21", user_agent=VLC):
            wait_for(lambda: '"start"' in run.output(), 10, "a start line")
        wait_for(lambda: '"end"' in run.output(), 10, "an end line")
        code, took = run.stop(signal.SIGINT)
    assert code == 0
    assert took < 10
    records = [json.loads(line) for line in run.output().splitlines()]
    assert [r["event"] for r in records] == ["start", "end"]
    start, end = records
    assert (start["ip"], start["user_agent"], start["mount"]) == ("127.0.0.21", VLC, MOUNT)
    assert end["reason"] == "left"
    assert end["started_at"] == start["started_at"]


def test_config_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[sources]]\nname = "main"\nkind = "icecast"\nurl = "http://x:1"\npoll_interval = -1\n'
    )
    for command in ("run", "check"):
        result = audimeter(command, "--config", str(config))
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"audimeter: config error: {config}: ")
        assert "sources[0].password: required but missing" in line
        assert "sources[0].poll_interval: Input should be greater than or equal to 0.2" in line


def test_missing_config_file(tmp_path: Path) -> None:
    result = audimeter("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    state.write_bytes(b"garbage" * 1000)
    config = tmp_path / "a.toml"
    config.write_text(
        f'[state]\npath = "{state}"\n[[sources]]\nname = "main"\nkind = "icecast"\n'
        f'url = "http://127.0.0.1:{free_port()}"\npassword = "x"\n'
    )
    started = time.monotonic()
    result = audimeter("run", "--config", str(config))
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot be used" in result.stderr
    assert state.read_bytes() == b"garbage" * 1000


def test_webhook_port_taken_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "a.toml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        config.write_text(
            f'[state]\npath = "{tmp_path / "state.db"}"\n[[sources]]\nname = "main"\n'
            f'kind = "icecast"\nurl = "http://127.0.0.1:{free_port()}"\npassword = "x"\n'
            f'[webhook]\nlisten = "{listen}"\npassword = "hook-secret"\n'
        )
        config.chmod(0o600)
        result = audimeter("run", "--config", str(config))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.endswith(
        f"ERROR   audimeter: webhook: cannot listen on {listen}: another program listens there "
        "(audimeter already running?); stop it, or choose another port with [webhook] listen "
        "and change Icecast's listener_add and listener_remove URLs to match"
    )
    assert "hook-secret" not in result.stderr


@pytest.mark.parametrize("command", [[], ["run"], ["check"]])
def test_help(command: list[str]) -> None:
    result = audimeter(*command, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout
    if command:
        assert "--config" in result.stdout
