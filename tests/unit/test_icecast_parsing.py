"""Icecast admin XML, parsed from real captures of Icecast 2.4.4 (../shared/fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audimeter.observations import Listener, decode_all
from audimeter.sources.icecast import parse_listclients, parse_stats
from audimeter.sources.xml import FormatError

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "icecast-2.4.4"
VLC = "VLC/3.0.18 LibVLC/3.0.18"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"
EXO = "ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2"

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"fixtures not found at {FIXTURES}")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def body(name: str) -> bytes:
    """The body of a captured raw HTTP response."""
    return fixture(name).split(b"\r\n\r\n", 1)[-1].split(b"\n\n", 1)[-1]


LISTCLIENTS = {
    "admin_listclients_live.xml": (
        "/live.mp3",
        [
            Listener("5", "127.0.0.1", VLC, 6),
            Listener("6", "127.0.0.1", FIREFOX, 5),
            Listener("7", "127.0.0.1", EXO, 4),
        ],
    ),
    "admin_listclients_live_plus5s.xml": (
        "/live.mp3",
        [
            Listener("5", "127.0.0.1", VLC, 12),
            Listener("6", "127.0.0.1", FIREFOX, 11),
            Listener("7", "127.0.0.1", EXO, 10),
        ],
    ),
    "admin_listclients_live_after_disconnect.xml": (
        "/live.mp3",
        [Listener("5", "127.0.0.1", VLC, 14), Listener("7", "127.0.0.1", EXO, 12)],
    ),
    "admin_listclients_live_after_reconnect.xml": (
        "/live.mp3",
        [
            Listener("5", "127.0.0.1", VLC, 16),
            Listener("7", "127.0.0.1", EXO, 14),
            Listener("26", "127.0.0.1", FIREFOX, 2),
        ],
    ),
    "admin_listclients_after_restart.xml": (
        "/live.mp3",
        [Listener("2", "127.0.0.1", "AfterRestart/1.0", 2)],
    ),
    "admin_listclients_after_restart_2.xml": (
        "/live.mp3",
        [
            Listener("2", "127.0.0.1", "AfterRestart/1.0", 3),
            Listener("5", "127.0.0.1", "AfterRestart2/1.0", 1),
        ],
    ),
    "admin_listclients_auth.xml": (
        "/auth.mp3",
        [Listener("30", "127.0.0.1", VLC, 4), Listener("31", "127.0.0.1", FIREFOX, 3)],
    ),
}


@pytest.mark.parametrize(("name", "expected"), LISTCLIENTS.items(), ids=LISTCLIENTS.keys())
def test_listclients(name: str, expected: tuple[str, list[Listener]]) -> None:
    mount, table = parse_listclients(fixture(name))
    assert (mount, decode_all(table)) == expected
    assert table.client_ids == [listener.client_id for listener in expected[1]]


def test_every_listclients_capture_is_covered() -> None:
    assert {p.name for p in FIXTURES.glob("admin_listclients*.xml")} == set(LISTCLIENTS)


@pytest.mark.parametrize("name", ["admin_stats.xml", "admin_stats_mount_live.xml"])
def test_stats(name: str) -> None:
    stats = parse_stats(fixture(name))
    assert stats.server_id == "Icecast 2.4.4"
    assert stats.instance == "2026-11-26T12:44:04+0000"
    expected = {"/live.mp3": 3}
    if name == "admin_stats.xml":
        expected |= {"/auth.mp3": 0, "/authcase.mp3": 0}
    assert stats.mounts == expected


@pytest.mark.parametrize(
    "name",
    [
        "admin_listclients_no_auth.txt",
        "admin_listclients_wrong_pass.txt",
        "admin_listclients_unknown_mount.txt",
    ],
)
def test_error_pages_are_not_icecast_xml(name: str) -> None:
    with pytest.raises(FormatError, match="not Icecast XML"):
        parse_listclients(body(name))


def test_listmounts_is_not_a_listclients_answer() -> None:
    # listmounts has <source> elements but no listeners: parsed as a mount with nobody on it.
    mount, listeners = parse_listclients(fixture("admin_listmounts.xml"))
    assert (mount, decode_all(listeners)) == ("/auth.mp3", [])


def test_stats_needs_the_instance() -> None:
    with pytest.raises(FormatError, match="server_start"):
        parse_stats(b"<icestats><source mount='/a'/></icestats>")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"<html><body>Login</body></html>",
        b"<icestats><source mount='/a'><listener>",
        b'<?xml version="1.0"?><!DOCTYPE icestats [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><icestats>&b;</icestats>',
    ],
    ids=["empty", "html", "truncated", "entities"],
)
def test_bad_xml_is_refused_or_harmless(payload: bytes) -> None:
    try:
        mount, listeners = parse_listclients(payload)
    except FormatError:
        return
    raise AssertionError(f"parsed {mount!r} {decode_all(listeners)!r}")


def test_external_entities_are_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    payload = (
        f'<?xml version="1.0"?><!DOCTYPE icestats [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<icestats><source mount="/a"><listener><IP>&x;</IP><ID>1</ID></listener>'
        "</source></icestats>"
    ).encode()
    _, listeners = parse_listclients(payload)
    assert "TOPSECRET" not in repr(decode_all(listeners))


def test_listener_without_an_id_is_left_out() -> None:
    payload = (
        b'<icestats><source mount="/a"><listener><IP>10.0.0.1</IP><ID>4</ID></listener>'
        b"<listener><IP>10.0.0.2</IP><ID></ID></listener>"
        b"<listener><IP>10.0.0.3</IP><UserAgent>x</UserAgent><ID>9</ID>"
        b"<Connected>oops</Connected></listener></source></icestats>"
    )
    _, table = parse_listclients(payload)
    assert decode_all(table) == [
        Listener("4", "10.0.0.1", "", 0),
        Listener("9", "10.0.0.3", "x", 0),
    ]


# Icecast 2.5 and KH formats as their sources write them (no server of those versions runs here).
ICECAST_25 = (
    b'<?xml version="1.0"?>\n<icestats><source mount="/live.mp3"><listeners>2</listeners>'
    b'<listener id="12"><id>12</id><ip>203.0.113.4</ip><useragent>VLC/3.0.20</useragent>'
    b"<connected>61</connected><referer>https://radio.example/player</referer></listener>"
    b'<listener id="15"><id>15</id><ip>2001:db8::7</ip><useragent>Winamp/5.9</useragent>'
    b"<connected>3</connected></listener></source></icestats>"
)
ICECAST_KH = (
    b'<?xml version="1.0"?>\n<icestats><source mount="/kh.mp3"><Listeners>1</Listeners>'
    b"<listener><IP>198.51.100.2</IP><UserAgent>foobar2000/2.0</UserAgent>"
    b"<Referer>https://kh.example/</Referer><lag>4096</lag><Connected>120</Connected>"
    b"<ID>77</ID></listener></source></icestats>"
)


def test_icecast_25_lower_case_listing() -> None:
    mount, table = parse_listclients(ICECAST_25)
    assert mount == "/live.mp3"
    assert table.client_ids == ["12", "15"]
    assert decode_all(table) == [
        Listener("12", "203.0.113.4", "VLC/3.0.20", 61, "https://radio.example/player"),
        Listener("15", "2001:db8::7", "Winamp/5.9", 3),
    ]


def test_icecast_kh_listing_with_referer_and_lag() -> None:
    _, table = parse_listclients(ICECAST_KH)
    assert decode_all(table) == [
        Listener("77", "198.51.100.2", "foobar2000/2.0", 120, "https://kh.example/")
    ]
