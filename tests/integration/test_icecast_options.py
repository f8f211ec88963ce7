"""Per-mount sites, mount patterns, filters and min_session against a real Icecast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomo import RecordingMatomo

from .conftest import MOUNT
from .test_core import FIREFOX, VLC, by_visitor, ended, write_config

pytestmark = pytest.mark.icecast


def test_sites_per_mount_title_template_and_public_url(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient
) -> None:
    with (
        RecordingMatomo(site_ids={1, 2}) as matomo,
        SourceClient(icecast, "/talk.mp3"),
        AudimeterProcess(
            write_config(
                tmp_path,
                icecast,
                matomo,
                sites='{ "/talk.mp3" = 2 }',
                title='"Radio {mount}"',
                public_url='"https://stream.example.org/"',
            )
        ),
    ):
        with (
            Listener(icecast, MOUNT, bind="127.0.0.41", user_agent=VLC),
            Listener(icecast, "/talk.mp3", bind="127.0.0.42", user_agent=VLC),
        ):
            time.sleep(2)
        wait_for(lambda: ended(matomo, 2), 15, "both sessions to end")
    sites = {
        stream[0]["cip"]: {
            (p["idsite"], p["url"], p.get("action_name") or p["e_n"]) for p in stream
        }
        for stream in by_visitor(matomo).values()
    }
    assert sites == {
        "127.0.0.41": {("1", f"https://stream.example.org{MOUNT}", f"Radio {MOUNT}")},
        "127.0.0.42": {("2", "https://stream.example.org/talk.mp3", "Radio /talk.mp3")},
    }


def test_excluded_mounts_and_filtered_listeners_never_reach_matomo(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    config = write_config(
        tmp_path,
        icecast,
        matomo,
        '[filters]\nexclude_addresses = ["127.0.0.44/32"]\n',
        exclude='["/relay*"]',
    )
    with SourceClient(icecast, "/relay.mp3"), AudimeterProcess(config):
        with (
            Listener(icecast, MOUNT, bind="127.0.0.43", user_agent="Liquidsoap/2.2.1"),
            Listener(icecast, MOUNT, bind="127.0.0.43", user_agent="UptimeRobot/2.0"),
            Listener(icecast, MOUNT, bind="127.0.0.44", user_agent=VLC),
            Listener(icecast, "/relay.mp3", bind="127.0.0.45", user_agent=VLC),
            Listener(icecast, MOUNT, bind="127.0.0.46", user_agent=FIREFOX),
        ):
            time.sleep(2)
        wait_for(lambda: ended(matomo), 15, "the counted session to end")
        time.sleep(1)
    (stream,) = by_visitor(matomo).values()
    assert {(p["cip"], p["ua"], p["url"].rsplit("/", 1)[1]) for p in stream} == {
        ("127.0.0.46", FIREFOX, MOUNT.lstrip("/"))
    }


def test_min_session_holds_back_then_sends_with_the_real_start(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    config = write_config(tmp_path, icecast, matomo, "[filters]\nmin_session = 4\n")
    with AudimeterProcess(config):
        with Listener(icecast, MOUNT, bind="127.0.0.47", user_agent=VLC):
            time.sleep(1.5)  # too short: never sent
        with Listener(icecast, MOUNT, bind="127.0.0.48", user_agent=VLC):
            connected = time.time()
            time.sleep(2.5)
            assert matomo.requests == []  # held back while shorter than min_session
            wait_for(lambda: matomo.requests, 10, "the session once it lasted min_session")
            first_arrival = matomo.requests[0].received_at
            time.sleep(1)
        wait_for(lambda: ended(matomo), 15, "the end")
    (stream,) = by_visitor(matomo).values()
    start = stream[0]
    assert start["cip"] == "127.0.0.48"
    assert start["new_visit"] == "1"
    assert first_arrival - connected >= 3
    assert connected - 2 <= int(start["cdt"]) <= connected + 1  # backdated to the real start
    (visit,) = matomo.model(10).visits()
    assert visit.total_time >= 4


def test_wrong_credentials_are_named_in_the_log(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    config = write_config(tmp_path, icecast, matomo)
    config.write_text(config.read_text().replace(f'"{icecast.admin_auth[1]}"', '"WrongPass1"'))
    with AudimeterProcess(config) as run:
        wait_for(lambda: "credentials refused" in run.logs(), 10, "the credentials error")
        time.sleep(1.5)
    lines = [line for line in run.logs().splitlines() if "credentials refused" in line]
    assert len(lines) == 1  # said once, not at every poll
    assert "source main" in lines[0]
    assert "WrongPass1" not in run.logs()
