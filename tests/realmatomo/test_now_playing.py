"""The title on air as an action-scoped custom dimension, in the real Matomo: a real Icecast whose
source changes its title, a real listener, the real `audimeter run`, read back from Matomo's API."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_now_playing import plays
from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomolab import MatomoLab

MOUNT = "/live.mp3"
VLC = "VLC/3.0.20 LibVLC/3.0.20"
KEEPALIVE = 4
FIRST, SECOND = "Lab Artist - First Song", "Lab Artist - Second Song"


@pytest.fixture
def icecast(tmp_path: Path) -> Iterator[IcecastServer]:
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    with IcecastServer(tmp_path / "icecast") as server:
        yield server


def now_playing_dimension(lab: MatomoLab) -> int:
    """The id of the site's active action-scoped "Now playing" dimension, made if missing."""
    configured = lab.api("CustomDimensions.getConfiguredCustomDimensions", idSite=lab.site_id)
    for dimension in configured:
        if dimension["name"] == "Now playing" and dimension["scope"] == "action":
            return int(dimension["idcustomdimension"])
    made = lab.api(
        "CustomDimensions.configureNewCustomDimension",
        idSite=lab.site_id,
        name="Now playing",
        scope="action",
        active=1,
    )
    return int(made["value"])


def action_titles(action: dict[str, Any], dimension: int) -> str | None:
    """An action's value of the dimension as Live reports it (None when it has none)."""
    found = action.get(f"dimension{dimension}")
    if found is None:
        found = (action.get("customDimensions") or {}).get(str(dimension))
    return found if found is None else str(found)


def ended(lab: MatomoLab) -> bool:
    visits = lab.visits()
    return len(visits) == 1 and visits[0]["actionDetails"][-1].get("eventAction") == "end"


def test_keepalives_and_the_end_carry_the_title_on_air(
    tmp_path: Path, icecast: IcecastServer, real_matomo: MatomoLab
) -> None:
    dimension = now_playing_dimension(real_matomo)
    user, password = icecast.admin_auth
    config = tmp_path / "audimeter.toml"
    config.write_text(
        real_matomo.config_head(tmp_path / "state.db", KEEPALIVE)
        + f"now_playing_dimension = {dimension}\n"
        + f"""
[[sources]]
name = "main"
kind = "icecast"
url = "{icecast.url}"
username = "{user}"
password = "{password}"
public_url = "http://radio.example.org:8000"
poll_interval = 1
"""
    )
    config.chmod(0o600)
    with SourceClient(icecast, MOUNT) as source, AudimeterProcess(config) as audimeter:
        source.set_title(artist="Lab Artist", title="First Song")
        wait_for(lambda: plays(tmp_path / "state.db"), 10, "the first title")
        with Listener(icecast, MOUNT, bind="127.0.0.61", user_agent=VLC):
            time.sleep(KEEPALIVE + 2)
            source.set_title(artist="Lab Artist", title="Second Song")
            time.sleep(KEEPALIVE + 2)
        wait_for(lambda: ended(real_matomo), 30, "the visit's end")
        assert "Traceback" not in audimeter.logs()
    (visit,) = real_matomo.visits()
    actions = visit["actionDetails"]
    assert actions[0]["type"] == "action"  # the start: a pageview, no title
    assert action_titles(actions[0], dimension) is None
    titles = [action_titles(a, dimension) for a in actions[1:]]
    assert actions[-1]["eventAction"] == "end"
    assert titles[0] == FIRST
    assert titles[-1] == SECOND
    assert set(titles) == {FIRST, SECOND}
