"""SHOUTcast 1 and 2 end to end: emulated servers, `audimeter run`, a recording Matomo."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomo import DEFAULT_TOKEN, RecordingMatomo
from tests.support.shoutcast import (
    DNAS1_PASSWORD,
    DNAS2_ADMIN_PASSWORD,
    Dnas1Emulator,
    Dnas2Emulator,
)

from .conftest import MOUNT
from .test_core import VLC, by_visitor, ended

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def config_text(tmp_path: Path, matomo: RecordingMatomo, *sources: str, extra: str = "") -> Path:
    text = "\n".join(
        [
            "[state]",
            f'path = "{tmp_path / "state.db"}"',
            "[matomo]",
            f'url = "{matomo.url}"',
            "site_id = 1",
            f'token_auth = "{DEFAULT_TOKEN}"',
            "keepalive_interval = 4",
            "visit_length = 10",
            *sources,
            extra,
        ]
    )
    path = tmp_path / "audimeter.toml"
    path.write_text(text + "\n")
    return path


def source_table(name: str, kind: str, url: str, password: str, *lines: str) -> str:
    return "\n".join(
        [
            "[[sources]]",
            f'name = "{name}"',
            f'kind = "{kind}"',
            f'url = "{url}"',
            f'password = "{password}"',
            "poll_interval = 0.5",
            "timeout = 2",
            *lines,
        ]
    )


def test_dnas2_streams_listeners_referrers_and_sites(tmp_path: Path) -> None:
    with (
        Dnas2Emulator(streams={1: "/stream", 2: "/talk"}) as dnas,
        RecordingMatomo(site_ids={1, 2}) as matomo,
    ):
        base = dnas.url
        config = config_text(
            tmp_path,
            matomo,
            source_table(
                "sc", "shoutcast2", dnas.url, DNAS2_ADMIN_PASSWORD, 'sites = { "/talk" = 2 }'
            ),
        )
        with AudimeterProcess(config):
            music = dnas.add_listener(
                1, "127.0.0.51", VLC, referer="https://radio.example/", connected=30
            )
            talk = dnas.add_listener(2, "127.0.0.52", FIREFOX)
            wait_for(lambda: len(by_visitor(matomo)) == 2, 10, "both starts")
            time.sleep(1)
            dnas.remove_listener(music)
            dnas.remove_listener(talk)
            wait_for(lambda: ended(matomo, 2), 10, "both ends")
    streams = {s[0]["cip"]: s for s in by_visitor(matomo).values()}
    music_start = streams["127.0.0.51"][0]
    assert music_start["url"] == f"{base}/stream"
    assert music_start["urlref"] == "https://radio.example/"
    assert music_start["idsite"] == "1"
    assert abs(int(music_start["cdt"]) - (time.time() - 30)) < 15  # connecttime backdates it
    talk_start = streams["127.0.0.52"][0]
    assert (talk_start["url"], talk_start["idsite"], talk_start["ua"]) == (
        f"{base}/talk",
        "2",
        FIREFOX,
    )
    assert all(p["idsite"] == "2" for p in streams["127.0.0.52"])


def test_dnas2_restart_ends_sessions_and_new_uids_start_new_ones(tmp_path: Path) -> None:
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        config = config_text(
            tmp_path, matomo, source_table("sc", "shoutcast2", dnas.url, DNAS2_ADMIN_PASSWORD)
        )
        with AudimeterProcess(config):
            dnas.add_listener(1, "127.0.0.53", VLC)
            wait_for(lambda: matomo.requests, 10, "the first start")
            dnas.restart()
            dnas.add_listener(1, "127.0.0.53", VLC)  # the same listener back, with a low uid
            wait_for(lambda: ended(matomo), 10, "the end of the first session")
            wait_for(
                lambda: sum(r.params.get("new_visit") == "1" for r in matomo.requests) == 2,
                10,
                "the second session",
            )
    assert len(matomo.model(10).visits()) == 2


def test_dnas1_listeners(tmp_path: Path) -> None:
    with Dnas1Emulator() as dnas, RecordingMatomo() as matomo:
        base = dnas.url
        config = config_text(
            tmp_path, matomo, source_table("old", "shoutcast1", dnas.url, DNAS1_PASSWORD)
        )
        with AudimeterProcess(config) as run:
            uid = dnas.add_listener(1, "127.0.0.54", "Winamp/5.9", connected=12)
            wait_for(lambda: matomo.requests, 10, "the start")
            dnas.remove_listener(uid)
            wait_for(lambda: ended(matomo), 10, "the end")
            assert DNAS1_PASSWORD not in run.logs()
    (stream,) = by_visitor(matomo).values()
    assert stream[0]["new_visit"] == "1"
    assert (stream[0]["cip"], stream[0]["ua"], stream[0]["url"]) == (
        "127.0.0.54",
        "Winamp/5.9",
        f"{base}/",
    )


def test_listener_behind_a_trusted_proxy_counts_under_its_own_address(tmp_path: Path) -> None:
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        config = config_text(
            tmp_path,
            matomo,
            source_table(
                "sc",
                "shoutcast2",
                dnas.url,
                DNAS2_ADMIN_PASSWORD,
                'trusted_proxies = ["127.0.0.60/32"]',
            ),
        )
        with AudimeterProcess(config):
            dnas.add_listener(1, "127.0.0.60", VLC, xff="203.0.113.9, 127.0.0.60")
            dnas.add_listener(1, "127.0.0.61", VLC, xff="198.51.100.1")  # not a proxy: as is
            wait_for(lambda: len(by_visitor(matomo)) == 2, 10, "both starts")
    assert {s[0]["cip"] for s in by_visitor(matomo).values()} == {"203.0.113.9", "127.0.0.61"}


def test_wrong_shoutcast_password_is_named_and_kept_secret(tmp_path: Path) -> None:
    with Dnas2Emulator() as dnas, RecordingMatomo() as matomo:
        config = config_text(
            tmp_path, matomo, source_table("sc", "shoutcast2", dnas.url, "NotThePassword9")
        )
        with AudimeterProcess(config) as run:
            dnas.add_listener(1, "127.0.0.55", VLC)
            wait_for(lambda: "credentials refused" in run.logs(), 10, "the credentials error")
        assert "source sc" in run.logs()
        assert "NotThePassword9" not in run.logs()
        assert matomo.requests == []


@pytest.mark.icecast
def test_a_hanging_server_never_delays_a_healthy_one(
    tmp_path: Path,
    icecast: IcecastServer,
    source: SourceClient,
) -> None:
    with Dnas2Emulator() as dnas, RecordingMatomo() as matomo:
        dnas.add_listener(1, "127.0.0.56", VLC)
        dnas.hang(30)
        config = config_text(
            tmp_path,
            matomo,
            source_table("stuck", "shoutcast2", dnas.url, DNAS2_ADMIN_PASSWORD),
            source_table("ice", "icecast", icecast.url, icecast.admin_auth[1]),
        )
        with AudimeterProcess(config) as run:
            time.sleep(1)
            with Listener(icecast, MOUNT, bind="127.0.0.57", user_agent=VLC):
                connected = time.time()
                wait_for(lambda: matomo.requests, 5, "the Icecast listener's start")
                delay = matomo.requests[0].received_at - connected
                time.sleep(1)
            wait_for(lambda: ended(matomo), 5, "the Icecast listener's end")
            dnas.hang(0)
            wait_for(lambda: "source stuck" in run.logs(), 10, "the hanging source's warning")
    assert delay < 3
    assert {r.params["cip"] for r in matomo.requests} <= {"127.0.0.57", "127.0.0.56"}


def test_check_names_the_shoutcast_software_and_streams(tmp_path: Path) -> None:
    with (
        Dnas2Emulator(streams={1: "/stream", 2: "/talk"}) as dnas2,
        Dnas1Emulator() as dnas1,
        RecordingMatomo() as matomo,
    ):
        dnas2.add_listener(2, "127.0.0.58", VLC)
        config = config_text(
            tmp_path,
            matomo,
            source_table(
                "two", "shoutcast2", dnas2.url, DNAS2_ADMIN_PASSWORD, 'exclude = ["/stream"]'
            ),
            source_table("one", "shoutcast1", dnas1.url, DNAS1_PASSWORD),
        )
        result = subprocess.run(
            [sys.executable, "-m", "audimeter", "check", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    two, one = result.stdout.splitlines()[:2]
    assert two.startswith("ok    source two: SHOUTcast DNAS 2.6.1.777")
    assert two.endswith("1 mount(s) with 1 listener(s): /talk (1)")  # /stream is excluded
    assert one.startswith("ok    source one: SHOUTcast DNAS 1.9.8")
    assert DNAS2_ADMIN_PASSWORD not in result.stdout
