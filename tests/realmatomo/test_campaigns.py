"""A campaign in the stream URL, through a real Icecast's URL authentication, in the real Matomo."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_webhook import PASSWORD, USERNAME, url_auth_mount
from tests.support.audimeter import AudimeterProcess, receiving, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient, free_port
from tests.support.matomolab import MatomoLab

MOUNT = "/live.mp3"
VLC = "VLC/3.0.20 LibVLC/3.0.20"
KEEPALIVE = 4


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[tuple[IcecastServer, int]]:
    """An Icecast whose /live.mp3 asks audimeter's receiver (on the port) about listeners."""
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    port = free_port()
    mount = url_auth_mount(f"http://127.0.0.1:{port}/icecast/main", MOUNT)
    with IcecastServer(tmp_path / "icecast", extra_mounts=[mount]) as server:
        yield server, port


def write_config(tmp_path: Path, icecast: IcecastServer, lab: MatomoLab, port: int) -> Path:
    user, password = icecast.admin_auth
    path = tmp_path / "audimeter.toml"
    path.write_text(
        lab.config_head(tmp_path / "state.db", KEEPALIVE)
        + f"""
[webhook]
listen = "127.0.0.1:{port}"
username = "{USERNAME}"
password = "{PASSWORD}"

[[sources]]
name = "main"
kind = "icecast"
url = "{icecast.url}"
username = "{user}"
password = "{password}"
public_url = "http://radio.example.org:8000"
poll_interval = 1
reconcile_delay = 5
"""
    )
    path.chmod(0o600)
    return path


def test_campaign_of_the_stream_url_is_the_visits_campaign(
    tmp_path: Path, hooked: tuple[IcecastServer, int], real_matomo: MatomoLab
) -> None:
    icecast, port = hooked
    config = write_config(tmp_path, icecast, real_matomo, port)
    with SourceClient(icecast, MOUNT), AudimeterProcess(config):
        wait_for(lambda: receiving(port, tmp_path / "state.db", MOUNT), 15, "receiver and poll")
        query = "utm_campaign=winter&utm_term=ad1&pass=not-for-matomo"
        with Listener(icecast, MOUNT, bind="127.0.0.81", user_agent=VLC, query=query) as listener:
            assert listener.wait_for_bytes(1000)
            # long enough for keep-alives, which carry no campaign: still one visit
            time.sleep(2.5 * KEEPALIVE)
        wait_for(
            lambda: any(
                a.get("eventAction") == "end"
                for v in real_matomo.visits()
                for a in v["actionDetails"]
            ),
            20,
            "the end in Matomo",
        )
    (visit,) = real_matomo.visits()
    assert visit["visitIp"] == "127.0.0.81"
    assert (visit["referrerType"], visit["referrerName"], visit["referrerKeyword"]) == (
        "campaign",
        "winter",
        "ad1",
    )
    actions = visit["actionDetails"]
    assert [a.get("eventAction") for a in actions[1:]].count("keep-alive") >= 2
    # Matomo keeps the campaign out of the page URL; the query's other parameters never got there
    assert actions[0]["url"] == "http://radio.example.org:8000/live.mp3"
    assert "not-for-matomo" not in str(visit)
