"""Icecast admin answers, parsed from real captures of Icecast 2.4.4, 2.5.0-rc2 and Icecast-KH
(tests/fixtures): listings, stats and error answers, as the parser and the poller read them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from audimeter.config import SourceConfig
from audimeter.observations import Listener, MountPolled, Observation, SourceSeen, decode_all
from audimeter.sources import SourceError
from audimeter.sources.icecast import IcecastPoller, parse_listclients, parse_stats
from audimeter.sources.xml import FormatError
from tests.support.fixtures import ICECAST_24, ICECAST_25, ICECAST_KH, http_answer

FIXTURES = ICECAST_24
VLC = "VLC/3.0.18 LibVLC/3.0.18"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"
EXO = "ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


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
    ("folder", "name", "titles"),
    [
        (ICECAST_24, "admin_stats.xml", {"/live.mp3": "Lab Artist - Sine 440Hz"}),
        (
            ICECAST_24,
            "admin_stats_titles.xml",
            {"/live.mp3": "Lab Artist - Sine 440Hz", "/second.mp3": "Only A Song Title"},
        ),
        (ICECAST_KH, "admin_stats.xml", {}),
        (ICECAST_25, "admin_stats.xml", {}),
    ],
    ids=["2.4", "2.4-titles", "kh", "2.5"],
)
def test_stats_titles(folder: Path, name: str, titles: dict[str, str]) -> None:
    stats = parse_stats((folder / name).read_bytes())
    assert stats.titles == {mount: titles.get(mount, "") for mount in stats.mounts}


@pytest.mark.parametrize(
    ("fields", "title"),
    [
        ("<artist>A</artist><title>T</title>", "A - T"),  # Ogg sources: apart
        ("<artist> A </artist>", "A"),
        ("<title>T</title><yp_currently_playing>Y</yp_currently_playing>", "T"),
        ("<yp_currently_playing>Y</yp_currently_playing>", "Y"),
        ("<artist></artist><title> </title>", ""),
    ],
)
def test_stats_title_fields(fields: str, title: str) -> None:
    body = (
        "<icestats><server_start_iso8601>S</server_start_iso8601>"
        f'<source mount="/m">{fields}</source></icestats>'
    ).encode()
    assert parse_stats(body).titles == {"/m": title}


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


def test_listeners_are_decoded_in_any_order_asked() -> None:
    """Found from the start, the end or the listener found last, among other elements."""
    count = 40
    payload = (
        b'<icestats><source mount="/a"><Listeners>40</Listeners>'
        + b"".join(
            b"<listener><IP>10.0.0.%d</IP><Connected>%d</Connected><ID>%d</ID></listener>%s"
            % (i, i, 100 + i, b"<other/>" if i % 3 == 0 else b"")
            for i in range(count)
        )
        + b"</source></icestats>"
    )
    expected = [Listener(str(100 + i), f"10.0.0.{i}", "", i) for i in range(count)]
    _, table = parse_listclients(payload)
    order = [35, 36, 39, 2, 3, 38, 20, 19, 0, 39, 21, 1, 30, 10, 10, 11, 37]
    assert [table.details(i) for i in order] == [expected[i] for i in order]
    with pytest.raises(IndexError):
        table.details(count)


# -- Icecast 2.5.0-rc2 and Icecast-KH (kh22), captured from real servers --------------------------
# 2.5 writes lower-case listener fields, an `id` attribute and more elements (host, role, acl,
# tls, protocol, history) and lists a user agent that is not UTF-8 empty; KH adds `<Referer>` and
# `<lag>`, a lower-case `<listeners>` count, an `id` attribute, and leaves such a user agent out.

VLC_20 = "VLC/3.0.20 LibVLC/3.0.20"
FIREFOX_133 = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
LONG = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0 OPR/115.0.0.0 AudimeterLongUATest/1.0 "
    '(extra "quoted" part)'
)
WINAMP = 'Winamp/5.9 "beta" (test\\build)'
RADIO = "Radio Ünï Player/1.0"
PLAYER_PAGE = "https://radio.example/player"

SERVERS = {
    "kh": (
        ICECAST_KH,
        {
            "admin_listclients_live.xml": (
                "/live.mp3",
                [
                    Listener("4", "127.0.0.51", VLC_20, 6, PLAYER_PAGE),
                    Listener("5", "127.0.0.52", FIREFOX_133, 6),
                    Listener("6", "127.0.0.53", LONG, 6),
                ],
            ),
            "admin_listclients_quote_utf8_query.xml": (
                "/live.mp3",
                [
                    Listener("1", "127.0.0.51", VLC_20, 85, PLAYER_PAGE),
                    Listener("8", "127.0.0.54", WINAMP, 12),
                    Listener("9", "127.0.0.57", "QueryPlayer/1.0", 12),
                    Listener("10", "127.0.0.55", RADIO, 12),
                ],
            ),
            "admin_listclients_latin1_ua.xml": (
                "/live.mp3",
                [
                    Listener("1", "127.0.0.51", VLC_20, 528, PLAYER_PAGE),
                    Listener("21", "127.0.0.58", "", 7),
                ],
            ),
            "admin_listclients_urlauth.xml": (
                "/authcap.mp3",
                [Listener("23", "127.0.0.64", "CapList/1.0", 3)],
            ),
        },
    ),
    "2.5": (
        ICECAST_25,
        {
            "admin_listclients_live.xml": (
                "/live.mp3",
                [
                    Listener("8", "127.0.0.72", FIREFOX_133, 3),
                    Listener("9", "127.0.0.73", LONG, 3),
                    Listener("10", "127.0.0.71", VLC_20, 3, PLAYER_PAGE),
                ],
            ),
            "admin_listclients_quote_utf8_query.xml": (
                "/live.mp3",
                [
                    Listener("1", "127.0.0.71", VLC_20, 46, PLAYER_PAGE),
                    Listener("30", "127.0.0.75", RADIO, 12),
                    Listener("31", "127.0.0.74", WINAMP, 12),
                    Listener("32", "127.0.0.77", "QueryPlayer/1.0", 12),
                ],
            ),
            "admin_listclients_latin1_ua.xml": (
                "/live.mp3",
                [
                    Listener("1", "127.0.0.71", VLC_20, 241, PLAYER_PAGE),
                    Listener("183", "127.0.0.78", "", 7),
                ],
            ),
            "admin_listclients_urlauth.xml": (
                "/authcap.mp3",
                [Listener("234", "127.0.0.84", "CapList/1.0", 3)],
            ),
        },
    ),
}
LISTINGS = [
    (folder / name, expected)
    for folder, listings in SERVERS.values()
    for name, expected in listings.items()
]


@pytest.mark.parametrize(
    ("path", "expected"), LISTINGS, ids=[f"{p.parent.name}/{p.name}" for p, _ in LISTINGS]
)
def test_kh_and_25_listclients(path: Path, expected: tuple[str, list[Listener]]) -> None:
    mount, table = parse_listclients(path.read_bytes())
    assert (mount, decode_all(table)) == expected
    assert table.client_ids == [listener.client_id for listener in expected[1]]


@pytest.mark.parametrize("server", SERVERS)
def test_every_kh_and_25_listclients_capture_is_covered(server: str) -> None:
    folder, listings = SERVERS[server]
    assert {p.name for p in folder.glob("admin_listclients*.xml")} == set(listings)


@pytest.mark.parametrize("folder", [ICECAST_KH, ICECAST_25], ids=["kh", "2.5"])
@pytest.mark.parametrize("name", ["admin_listclients_live", "admin_listmounts", "admin_stats"])
def test_captured_answers_hold_the_captured_bodies(folder: Path, name: str) -> None:
    answer = http_answer(folder / f"{name}.txt")
    assert answer.status == 200
    assert answer.body == (folder / f"{name}.xml").read_bytes()


@pytest.mark.parametrize(
    ("folder", "server_id", "instance"),
    [
        (ICECAST_KH, "Icecast 2.4.0-kh22", "03/Dec/2026:07:08:54 +0000"),  # no server_start_iso8601
        (ICECAST_25, "Icecast 2.4.999.2", "2026-12-03T07:13:49+0000"),
    ],
    ids=["kh", "2.5"],
)
def test_kh_and_25_stats(folder: Path, server_id: str, instance: str) -> None:
    stats = parse_stats((folder / "admin_stats.xml").read_bytes())
    assert (stats.server_id, stats.instance, stats.mounts) == (
        server_id,
        instance,
        {"/live.mp3": 3},
    )


@pytest.mark.parametrize("folder", [ICECAST_KH, ICECAST_25], ids=["kh", "2.5"])
def test_kh_and_25_listmounts_is_a_mount_with_nobody(folder: Path) -> None:
    mount, listeners = parse_listclients((folder / "admin_listmounts.xml").read_bytes())
    assert (mount, decode_all(listeners)) == ("/live.mp3", [])


ERRORS = [
    (ICECAST_24, "admin_listclients_no_auth.txt", 401),
    (ICECAST_24, "admin_listclients_wrong_pass.txt", 401),
    (ICECAST_24, "admin_listclients_unknown_mount.txt", 400),
    (ICECAST_KH, "admin_listclients_no_auth.txt", 401),  # an empty body
    (ICECAST_KH, "admin_listclients_wrong_pass.txt", 401),
    (ICECAST_KH, "admin_listclients_unknown_mount.txt", 400),  # "mount does not exist"
    (ICECAST_KH, "status-json.xsl.txt", 404),  # KH ships no status-json.xsl
    (ICECAST_25, "admin_listclients_no_auth.txt", 401),  # an XML <report>
    (ICECAST_25, "admin_listclients_wrong_pass.txt", 401),
    (ICECAST_25, "admin_listclients_unknown_mount.txt", 404),
]


@pytest.mark.parametrize(
    ("folder", "name", "status"), ERRORS, ids=[f"{f.name}/{n}" for f, n, _ in ERRORS]
)
def test_error_answers_are_not_icecast_xml(folder: Path, name: str, status: int) -> None:
    answer = http_answer(folder / name)
    assert answer.status == status
    with pytest.raises(FormatError, match="not Icecast XML"):
        parse_listclients(answer.body)
    with pytest.raises(FormatError, match="not Icecast XML"):
        parse_stats(answer.body)


# -- the poller, answered with the captures -------------------------------------------------------


def replay(answers: dict[str, Path]) -> httpx.MockTransport:
    """A server that answers each path with its captured answer."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = answers[request.url.path]
        if path.suffix == ".xml":
            return httpx.Response(200, content=path.read_bytes())
        answer = http_answer(path)
        headers = [(k, v) for k, v in answer.headers if k.lower() != "content-length"]
        return httpx.Response(answer.status, headers=headers, content=answer.body)

    return httpx.MockTransport(handle)


def poll(answers: dict[str, Path]) -> list[Observation]:
    config = SourceConfig.model_validate(
        {"name": "radio", "kind": "icecast", "url": "http://icecast.test", "password": "pw"}
    )
    seen: list[Observation] = []

    async def emit(observation: Observation) -> None:
        seen.append(observation)

    async def main() -> None:
        async with httpx.AsyncClient(transport=replay(answers)) as client:
            await IcecastPoller(config, client, clock=lambda: 1_800_000_000).poll(emit)

    asyncio.run(main())
    return seen


@pytest.mark.parametrize("server", SERVERS)
def test_a_poll_of_the_captured_server(server: str) -> None:
    folder, listings = SERVERS[server]
    stats = parse_stats((folder / "admin_stats.xml").read_bytes())
    seen, polled = poll(
        {
            "/admin/stats": folder / "admin_stats.xml",
            "/admin/listclients": folder / "admin_listclients_live.xml",
        }
    )
    assert seen == SourceSeen("radio", 1_800_000_000, stats.instance, frozenset({"/live.mp3"}))
    assert isinstance(polled, MountPolled)
    assert (polled.mount, decode_all(polled.listeners)) == listings["admin_listclients_live.xml"]
    # Only the 2.4 capture was made with a title set; KH and 2.5 were sent none.
    assert polled.title == ("Lab Artist - Sine 440Hz" if folder == ICECAST_24 else "")


@pytest.mark.parametrize("folder", [ICECAST_24, ICECAST_KH, ICECAST_25], ids=["2.4", "kh", "2.5"])
def test_a_mount_the_server_does_not_know_is_skipped(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    observations = poll(
        {
            "/admin/stats": folder / "admin_stats.xml",
            "/admin/listclients": folder / "admin_listclients_unknown_mount.txt",
        }
    )
    assert [type(o) for o in observations] == [SourceSeen]
    status = http_answer(folder / "admin_listclients_unknown_mount.txt").status
    assert "mount /live.mp3 skipped until it answers: source radio" in caplog.text
    assert f"HTTP {status}" in caplog.text


@pytest.mark.parametrize("folder", [ICECAST_24, ICECAST_KH, ICECAST_25], ids=["2.4", "kh", "2.5"])
@pytest.mark.parametrize(
    "name", ["admin_listclients_no_auth.txt", "admin_listclients_wrong_pass.txt"]
)
def test_refused_credentials_are_named(folder: Path, name: str) -> None:
    # The captures are listclients answers; Icecast refuses /admin/stats the same way.
    with pytest.raises(SourceError, match=r"credentials refused \(HTTP 401\)"):
        poll({"/admin/stats": folder / name})


def listing(*listeners: bytes) -> bytes:
    return b'<icestats><source mount="/a"><Listeners>9</Listeners>%s</source></icestats>' % (
        b"".join(listeners)
    )


def l24(client_id: bytes) -> bytes:
    """A listener as Icecast 2.4 writes it, its address ending in its id."""
    return b"<listener><IP>10.0.0.%s</IP><Connected>7</Connected><ID>%s</ID></listener>" % (
        client_id or b"0",
        client_id,
    )


# Listings in the shape nearly every server writes (read by the walk over the id elements) and
# in every shape that walk must hand to the listener-by-listener path, with what both must read.
ID_SHAPES = {
    "one <ID> each": (listing(l24(b"4"), l24(b"5")), [("4", "10.0.0.4"), ("5", "10.0.0.5")]),
    "one <id> each (2.5)": (
        listing(b"<listener><id>8</id><ip>10.0.0.1</ip></listener>"),
        [("8", "10.0.0.1")],
    ),
    "nobody": (listing(), []),
    "an id listed twice counts twice here": (
        listing(l24(b"4"), l24(b"4")),
        [("4", "10.0.0.4")] * 2,
    ),
    "a listener without an id is left out": (
        listing(l24(b"4"), b"<listener><IP>10.0.0.9</IP></listener>", l24(b"5")),
        [("4", "10.0.0.4"), ("5", "10.0.0.5")],
    ),
    "an empty <ID> is no id": (listing(l24(b""), l24(b"5")), [("5", "10.0.0.5")]),
    "two <ID>: the first counts": (
        listing(b"<listener><ID>4</ID><ID>6</ID></listener>", l24(b"5")),
        [("4", ""), ("5", "10.0.0.5")],
    ),
    "an <ID> deeper down is not the listener's": (
        listing(b"<listener><x><ID>6</ID></x><ID>4</ID></listener>", l24(b"5")),
        [("4", ""), ("5", "10.0.0.5")],
    ),
    "only an <ID> deeper down: no id": (
        listing(b"<listener><x><ID>6</ID></x></listener>", l24(b"5")),
        [("5", "10.0.0.5")],
    ),
    "as many <ID> as listeners, one of them nobody's": (
        listing(b"<listener><IP>10.0.0.9</IP></listener>", b"<other>%s</other>" % l24(b"6")),
        [],
    ),
    "an <ID> outside any listener is nobody's": (
        listing(l24(b"4"), b"<other><ID>6</ID></other>", b"<ID>7</ID>", l24(b"5")),
        [("4", "10.0.0.4"), ("5", "10.0.0.5")],
    ),
    "a listener that is not the source's is not listed": (
        listing(l24(b"4"), b"<other>%s</other>" % l24(b"6")),
        [("4", "10.0.0.4")],
    ),
    "a listener inside a listener is not listed": (
        listing(b"<listener><ID>4</ID>%s</listener>" % l24(b"6")),
        [("4", "")],
    ),
    "<ID> and <id> mixed": (
        listing(l24(b"4"), b"<listener><id>8</id></listener>"),
        [("4", "10.0.0.4"), ("8", "")],
    ),
    "<ID> without text, <id> with": (
        listing(b"<listener><ID/><id>8</id></listener>", b"<listener><ID/><id>9</id></listener>"),
        [("8", ""), ("9", "")],
    ),
    "text after an element in <ID>": (listing(b"<listener><ID><b/>5</ID></listener>"), [("5", "")]),
    "text before an element in <ID>": (
        listing(b"<listener><ID>5<b/>6</ID></listener>"),
        [("5", "")],
    ),
}


@pytest.mark.parametrize(("body", "expected"), ID_SHAPES.values(), ids=ID_SHAPES.keys())
def test_client_ids_in_every_shape(body: bytes, expected: list[tuple[str, str]]) -> None:
    _, table = parse_listclients(body)
    assert list(table.client_ids) == [client_id for client_id, _ in expected]
    assert [(listener.client_id, listener.ip) for listener in decode_all(table)] == expected
