"""Players named as Matomo names them, remembered per user agent."""

from __future__ import annotations

import pytest

from audimeter.players import CACHED_AGENTS, UNKNOWN, player_name

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
