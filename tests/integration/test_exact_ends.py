"""Exact ends end to end: a real Icecast's access log and URL authentication, `audimeter run`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.audimeter import AudimeterProcess, receiving, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient, free_port
from tests.support.matomo import RecordingMatomo

from .conftest import MOUNT
from .test_core import VLC, by_visitor, ended, write_config
from .test_webhook import PASSWORD, USERNAME, url_auth_mount

pytestmark = pytest.mark.icecast

HOOK = "/hook.mp3"
LOG_LINE = re.compile(r'^(\S+) .*"GET (\S+) [^"]*" 200 \d+ "[^"]*" "([^"]*)" (\d+)$')


def log_durations(*paths: Path) -> dict[tuple[str, str], int]:
    """(ip, mount) → seconds connected, from Icecast's access log lines."""
    found = {}
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            match = LOG_LINE.match(line)
            if match:
                found[(match[1], match[2])] = int(match[4])
    return found


def visit_length(stream: list[dict[str, str]]) -> int:
    """What Matomo shows: last action - first action + 1."""
    return int(stream[-1]["cdt"]) - int(stream[0]["cdt"]) + 1


def test_access_log_gives_exact_ends_across_a_rotation(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    log = icecast.access_log_path
    config = write_config(
        tmp_path, icecast, matomo, poll_interval=2, reconcile_delay=20, access_log=f'"{log}"'
    )
    with AudimeterProcess(config):
        time.sleep(1)
        with Listener(icecast, MOUNT, bind="127.0.0.71", user_agent=VLC):
            wait_for(lambda: matomo.requests, 10, "the start")
            time.sleep(1.3)
            # Rotate mid-session as logrotate's copytruncate does; Icecast appends, so it goes
            # on writing at the start of the emptied file.
            rotated = log.with_name("access.log.1")
            shutil.copyfile(log, rotated)
            os.truncate(log, 0)
            time.sleep(1.4)
        with Listener(icecast, MOUNT, bind="127.0.0.72", user_agent=VLC):
            time.sleep(0.4)  # shorter than a poll: only the log knows it
        wait_for(lambda: ended(matomo, 2), 15, "both ends")
    durations = log_durations(rotated, log)
    streams = {s[0]["cip"]: s for s in by_visitor(matomo).values()}
    first = streams["127.0.0.71"]
    assert first[-1]["e_a"] == "end"
    assert visit_length(first) == durations[("127.0.0.71", MOUNT)]  # to the second
    short = streams["127.0.0.72"]
    assert [p.get("e_a", "start") for p in short] == ["start", "end"]
    assert len(matomo.model(10).visits()) == 2


def webhook_config(
    tmp_path: Path, icecast: IcecastServer, matomo: RecordingMatomo, port: int
) -> Path:
    return write_config(
        tmp_path,
        icecast,
        matomo,
        f'[webhook]\nlisten = "127.0.0.1:{port}"\nusername = "{USERNAME}"\n'
        f'password = "{PASSWORD}"\n',
        poll_interval=1,
        reconcile_delay=5,
    )


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[tuple[IcecastServer, int]]:
    """An Icecast whose mount /hook.mp3 asks audimeter's receiver (on `port`) about listeners."""
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    port = free_port()
    mount = url_auth_mount(f"http://127.0.0.1:{port}/icecast/main", HOOK)
    with IcecastServer(tmp_path / "icecast-hook", extra_mounts=[mount]) as server:
        yield server, port


def test_url_authentication_gives_exact_times_and_the_campaign(
    tmp_path: Path, hooked: tuple[IcecastServer, int], matomo: RecordingMatomo
) -> None:
    icecast, port = hooked
    with (
        SourceClient(icecast, HOOK),
        AudimeterProcess(webhook_config(tmp_path, icecast, matomo, port)),
    ):
        wait_for(lambda: receiving(port, tmp_path / "state.db", HOOK), 15, "receiver and poll")
        query = "utm_source=newsletter&utm_campaign=spring&utm_term=jazz"
        with Listener(
            icecast,
            HOOK,
            bind="127.0.0.73",
            user_agent=VLC,
            query=query,
            referer="https://radio.example/",
        ) as listener:
            assert listener.wait_for_bytes(1000)
            time.sleep(2.2)
        wait_for(lambda: ended(matomo), 10, "the end")
        log = icecast.access_log_path
    (stream,) = by_visitor(matomo).values()
    start = stream[0]
    assert start["url"].endswith(f"{HOOK}?{query}")  # where Matomo reads the campaign
    assert start["urlref"] == "https://radio.example/"
    assert visit_length(stream) == log_durations(log)[("127.0.0.73", HOOK)]


def test_a_leave_missed_while_audimeter_was_down_is_repaired_by_the_poll(
    tmp_path: Path, hooked: tuple[IcecastServer, int], matomo: RecordingMatomo
) -> None:
    icecast, port = hooked
    config = webhook_config(tmp_path, icecast, matomo, port)
    with SourceClient(icecast, HOOK), SourceClient(icecast, MOUNT):
        with AudimeterProcess(config) as run:
            wait_for(lambda: receiving(port, tmp_path / "state.db", HOOK), 15, "receiver and poll")
            listener = Listener(icecast, HOOK, bind="127.0.0.74", user_agent=VLC)
            listener.connect()
            # a mount without URL authentication: no listener_add ever comes, the poll finds it
            plain = Listener(icecast, MOUNT, bind="127.0.0.75", user_agent=VLC)
            plain.connect()
            wait_for(lambda: len(by_visitor(matomo)) == 2, 10, "both starts")
            code, _ = run.stop(signal.SIGTERM)
            assert code == 0
        listener.close()  # Icecast's listener_remove finds no receiver: lost for good
        plain.close()
        time.sleep(1)
        with AudimeterProcess(config):
            wait_for(lambda: ended(matomo, 2), 20, "the polls to end both sessions")
    streams = {s[0]["cip"]: s for s in by_visitor(matomo).values()}
    for ip in ("127.0.0.74", "127.0.0.75"):
        kinds = [p.get("e_a", "start") for p in streams[ip]]
        assert (kinds[0], kinds[-1], kinds.count("end")) == ("start", "end", 1)
    assert len(matomo.model(10).visits()) == 2


def test_a_line_written_while_audimeter_was_down_is_read_after_the_restart(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    log = icecast.access_log_path
    config = write_config(
        tmp_path, icecast, matomo, poll_interval=1, reconcile_delay=20, access_log=f'"{log}"'
    )
    with Listener(icecast, MOUNT, bind="127.0.0.77", user_agent=VLC) as listener:
        assert listener.wait_for_bytes(1000)
        with AudimeterProcess(config) as run:
            wait_for(lambda: matomo.requests, 10, "the start")
            code, _ = run.stop(signal.SIGTERM)
            assert code == 0
    time.sleep(1)  # the listener's line is written while audimeter is down
    with AudimeterProcess(config):
        wait_for(lambda: ended(matomo), 15, "the end from the log read after the restart")
    (stream,) = by_visitor(matomo).values()
    assert visit_length(stream) == log_durations(log)[("127.0.0.77", MOUNT)]
