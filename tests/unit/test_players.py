"""Players named as Matomo names them, remembered per user agent."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml_rs
from device_detector import DeviceDetector  # type: ignore[import-untyped]

from audimeter.players import CACHED_AGENTS, UNKNOWN, _MatomoClients, player_name

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("user_agent", "player"),
    [
        ("VLC/3.0.20 LibVLC/3.0.20", "VLC"),
        ("WinampMPEG/5.66, Ultravox/2.1", "Winamp"),
        ("iTunes/12.12 (Windows; Microsoft Windows 10 x64) AppleWebKit/7613.2007", "iTunes"),
        ("foobar2000/1.6.16", "Foobar2000"),
        ("NSPlayer/12.00.19041.3636 WMFSDK/12.00.19041.3636", "Windows Media Player"),
        (CHROME, "Chrome"),
        ("Lavf/58.76.100", "ffmpeg"),
        # Names this port's own generic rules would make up, where Matomo knows no client.
        ("SomethingWeird/1.0", UNKNOWN),
        ("BASS/2.4", UNKNOWN),
        ("RadioApp/1.0 CFNetwork/1408.0.4 Darwin/22.5.0", UNKNOWN),
        ("ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2", "Android Browser"),
        ("", UNKNOWN),
        ("   ", UNKNOWN),
    ],
)
def test_players_are_named_as_matomo_names_them(user_agent: str, player: str) -> None:
    assert player_name(user_agent) == player


def test_names_are_remembered_within_a_bound() -> None:
    player_name.cache_clear()
    for _ in range(3):
        assert player_name("VLC/3.0.20 LibVLC/3.0.20") == "VLC"
    info = player_name.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (2, 1, CACHED_AGENTS)


class _WithOperatingSystem(_MatomoClients):
    """The detector as it was before the operating system was left unparsed."""

    __slots__ = ()
    parse_os = DeviceDetector.parse_os


def test_names_do_not_depend_on_the_operating_system() -> None:
    fixtures = resources.files("device_detector.tests.fixtures.upstream")
    agents = [CHROME, "ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2"]
    for name, count in (
        ("mediaplayer.yml", 40),
        ("podcasting.yml", 40),
        ("desktop.yml", 60),
        ("smartphone-1.yml", 60),
        ("tv.yml", 30),
    ):
        entries = yaml_rs.loads(fixtures.joinpath(name).read_text(encoding="utf-8"))
        assert isinstance(entries, list)
        agents.extend(entry["user_agent"] for entry in entries[:count])
    for agent in agents:
        with_os = _WithOperatingSystem(
            agent, skip_bot_detection=True, skip_device_detection=True, check_cache=False
        ).parse()
        assert with_os.os is not None or not agent.strip()
        name = with_os.client_name()
        assert player_name(agent) == (name if len(name) > 2 else UNKNOWN), agent
