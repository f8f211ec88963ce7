"""Icecast URL-authentication forms, from requests real Icecast 2.4.4, 2.5.0-rc2 and Icecast-KH
servers made (tests/fixtures)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audimeter.observations import ListenerJoined, ListenerLeft
from audimeter.webhook import FormError, decode, decode_form, encode, parse_form
from tests.support.fixtures import ICECAST_24, ICECAST_25, ICECAST_KH, url_auth_requests

NOW = 1_800_000_000
SOURCE = "main"
VLC = "VLC/3.0.18 LibVLC/3.0.18"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"
LOCAL = "127.0.0.1"


def logged_requests() -> list[tuple[str, str]]:
    """(request line, form body) of every request of the 2.4.4 capture, in order."""
    requests = url_auth_requests(ICECAST_24 / "url_auth_requests.log")
    return [(request.request_line, request.body) for request in requests]


def joined(client: str, agent: str, mount: str = "/auth.mp3", **extra: str) -> ListenerJoined:
    return ListenerJoined(SOURCE, NOW, mount, client, LOCAL, agent, **extra)


def left(
    client: str, agent: str, duration: int, mount: str = "/auth.mp3", **extra: str
) -> ListenerLeft:
    return ListenerLeft(SOURCE, NOW, mount, duration, client, LOCAL, agent, **extra)


# Every request of the capture, in order: ping and mount_add/mount_remove report nothing.
EXPECTED = [
    None,  # curl's ping of the test receiver: not from Icecast, an unknown action
    None,  # mount_add
    joined("30", VLC),
    joined(
        "31",
        FIREFOX,
        referrer="https://www.example.org/player.html",
        query="token=abc123&utm_source=web",
        forwarded_for="203.0.113.7",
    ),
    # listener_remove never carries the forwarded headers, only the URI with its query
    left("31", FIREFOX, 3, query="token=abc123&utm_source=web"),
    joined("33", "ProbeAccept/1.0"),
    # /authcase.mp3 lists its headers in mixed case: Icecast forwarded none of them
    joined("34", "CaseTest/1.0", mount="/authcase.mp3"),
    left("33", "ProbeAccept/1.0", 3),
    left("34", "CaseTest/1.0", 2, mount="/authcase.mp3"),
    joined("35", "ProbeReject/1.0"),
    joined("36", "Probe403/1.0"),
    joined("37", "SurvivesBackendDown/1.0"),
    None,  # ping
    joined("39", "ProbeSlow5/1.0"),
    joined("40", "ProbeSlow20/1.0"),
    left("39", "ProbeSlow5/1.0", 28),
    joined("41", "ProbeSerialA/1.0"),
    joined("42", "ProbeSerialB/1.0"),
    left("41", "ProbeSerialA/1.0", 17),
    left("42", "ProbeSerialB/1.0", 21),
    joined("43", "ProbeTimelimit/1.0"),
    left("43", "ProbeTimelimit/1.0", 7),
    joined("45", "ShutdownTest1/1.0"),
    None,  # mount_remove on SIGTERM, then a listener_remove for everyone still connected
    left("30", VLC, 81),
    left("45", "ShutdownTest1/1.0", 3),
]


def test_every_captured_request_parses_to_the_exact_observation() -> None:
    requests = logged_requests()
    assert len(requests) == len(EXPECTED)
    for (request_line, body), expected in zip(requests, EXPECTED, strict=True):
        assert parse_form(decode_form(body.encode()), SOURCE, NOW) == expected, request_line


def test_captured_actions_match_the_paths_they_were_posted_to() -> None:
    for request_line, body in logged_requests():
        action = decode_form(body.encode())["action"]
        assert request_line == f"POST /{action} HTTP/1.1"


def test_captured_forms_round_trip_through_the_inbox() -> None:
    for _, body in logged_requests():
        observation = parse_form(decode_form(body.encode()), SOURCE, NOW)
        if observation is not None:
            assert decode(encode(observation)) == observation


# -- Icecast-KH and 2.5.0-rc2, captured: KH adds referer=, listeners= and sent=; 2.5 adds
# server-instance=, keeps the query string in listener_remove, and asks about every admin request
# on a URL-auth mount (audimeter's polls), with the admin's user and password.

CAP_PLAYER = 'CapPlayer/1.0 "q" Ünï'
CAP_PAGE = "https://cap.example/p?a=1"
CAMPAIGN = "utm_campaign=spring&x=a%20b"


def captured(
    client: str, ip: str, agent: str, duration: int | None = None, **extra: str
) -> ListenerJoined | ListenerLeft:
    if duration is None:
        return ListenerJoined(SOURCE, NOW, "/authcap.mp3", client, ip, agent, **extra)
    return ListenerLeft(SOURCE, NOW, "/authcap.mp3", duration, client, ip, agent, **extra)


CAPTURED = {
    "kh": (
        ICECAST_KH,
        [
            captured("16", "127.0.0.62", CAP_PLAYER, referrer=CAP_PAGE, query=CAMPAIGN),
            captured("16", "127.0.0.62", CAP_PLAYER, 4),  # KH's remove has no query string
            captured("23", "127.0.0.64", "CapList/1.0", query="x=1"),
            captured("23", "127.0.0.64", "CapList/1.0", 7),
        ],
    ),
    "2.5": (
        ICECAST_25,
        [
            captured("117", "127.0.0.82", CAP_PLAYER, referrer=CAP_PAGE, query=CAMPAIGN),
            captured("117", "127.0.0.82", CAP_PLAYER, 5, query=CAMPAIGN),
            captured("234", "127.0.0.84", "CapList/1.0", query="x=1"),
            captured("234", "127.0.0.84", "CapList/1.0", 7, query="x=1"),
        ],
    ),
}
ADMIN_REQUESTS_25 = 48
"""Admin requests (`listener_add` for `/admin/listclients?mount=/authcap.mp3`) in the 2.5
capture: one per poll of the URL-auth mount."""


@pytest.mark.parametrize("server", CAPTURED)
def test_every_captured_kh_and_25_request_parses_to_the_exact_observation(server: str) -> None:
    folder, expected = CAPTURED[server]
    parsed = []
    admin = 0
    for request in url_auth_requests(folder / "url_auth_requests.log"):
        fields = decode_form(request.body.encode())
        observation = parse_form(fields, SOURCE, NOW)
        if observation is None:
            assert fields["mount"].startswith("/admin/listclients?mount=")
            admin += 1
        else:
            parsed.append(observation)
            assert decode(encode(observation)) == observation
    assert parsed == expected
    assert admin == (ADMIN_REQUESTS_25 if server == "2.5" else 0)


def test_an_admin_request_carries_the_admin_password_and_reports_nothing() -> None:
    requests = url_auth_requests(ICECAST_25 / "url_auth_requests.log")
    fields = decode_form(requests[0].body.encode())
    assert (fields["action"], fields["user"], fields["pass"]) == (
        "listener_add",
        "admin",
        "admpw-25",
    )
    assert fields["mount"] == "/admin/listclients?mount=%2Fauthcap.mp3"
    assert parse_form(fields, SOURCE, NOW) is None
    for mount in ("/admin", "/admin/stats", "/admin/metadata?mount=/a.mp3&mode=updinfo"):
        assert parse_form({**fields, "mount": mount}, SOURCE, NOW) is None
    # a mount whose name merely starts with "admin" is a stream
    assert parse_form({**fields, "mount": "/administration.mp3"}, SOURCE, NOW) is not None


def test_client_add_and_client_remove_are_a_join_and_a_leave() -> None:
    """The action names of Icecast 2.5's role-based authentication (DOMAIN.md section 2); the
    captured 2.5.0-rc2 still sends listener_add and listener_remove."""
    requests = url_auth_requests(ICECAST_25 / "url_auth_requests.log")
    forms = [decode_form(r.body.encode()) for r in requests]
    joins = [f for f in forms if f["client"] == "117"]
    renamed = [
        parse_form({**form, "action": form["action"].replace("listener", "client")}, SOURCE, NOW)
        for form in joins
    ]
    assert renamed == CAPTURED["2.5"][1][:2]


# -- details --------------------------------------------------------------------------------------

BASE = {
    "action": "listener_add",
    "client": "7",
    "mount": "/live.mp3",
    "ip": "10.0.0.1",
    "agent": "Player/1",
}


@pytest.mark.parametrize(
    "headers",
    [
        {"ClientHeader.referer": "https://a.example/", "ClientHeader.x-forwarded-for": "1.2.3.4"},
        {"clientheader.Referer": "https://a.example/", "CLIENTHEADER.X-FORWARDED-FOR": "1.2.3.4"},
        {"referer": "https://a.example/", "x-forwarded-for": "1.2.3.4"},
    ],
    ids=["documented-prefix", "prefix-any-case", "no-prefix"],
)
def test_forwarded_headers_with_either_prefix(headers: dict[str, str]) -> None:
    observation = parse_form({**BASE, **headers}, SOURCE, NOW)
    assert isinstance(observation, ListenerJoined)
    assert (observation.referrer, observation.forwarded_for) == ("https://a.example/", "1.2.3.4")


def test_other_prefixes_are_not_guessed() -> None:
    observation = parse_form({**BASE, "Hdr_referer": "https://a.example/"}, SOURCE, NOW)
    assert isinstance(observation, ListenerJoined)
    assert observation.referrer == ""


def test_the_mount_path_is_percent_decoded_and_the_query_kept_raw() -> None:
    # Icecast 2.4.4 sends the request URI as the listener wrote it, path encoding included.
    form = {**BASE, "mount": "/caf%C3%A9%2Emp3?q=a%20b&x=%2F"}
    observation = parse_form(form, SOURCE, NOW)
    assert isinstance(observation, ListenerJoined)
    assert (observation.mount, observation.query) == ("/café.mp3", "q=a%20b&x=%2F")


def test_an_empty_query_string() -> None:
    observation = parse_form({**BASE, "mount": "/live.mp3?"}, SOURCE, NOW)
    assert isinstance(observation, ListenerJoined)
    assert (observation.mount, observation.query) == ("/live.mp3", "")


@pytest.mark.parametrize("action", ["mount_add", "mount_remove", "stream_auth", "ping", ""])
def test_actions_without_a_listener_event(action: str) -> None:
    assert parse_form({**BASE, "action": action}, SOURCE, NOW) is None


@pytest.mark.parametrize(
    "form",
    [
        {**BASE, "client": ""},
        {k: v for k, v in BASE.items() if k != "client"},
        {k: v for k, v in BASE.items() if k != "mount"},
        {**BASE, "mount": "live.mp3"},
        {**BASE, "action": "listener_remove"},
        {**BASE, "action": "listener_remove", "duration": "-3"},
        {**BASE, "action": "listener_remove", "duration": "3.5"},
        {**BASE, "action": "client_remove", "duration": "\u0663"},  # an Arabic-Indic three
    ],
)
def test_malformed_joins_and_leaves(form: dict[str, str]) -> None:
    with pytest.raises(FormError):
        parse_form(form, SOURCE, NOW)


def test_decode_form_keeps_blank_fields_and_decodes_escapes() -> None:
    assert decode_form(b"action=listener_add&user=&pass=&agent=A%20B%2fC") == {
        "action": "listener_add",
        "user": "",
        "pass": "",
        "agent": "A B/C",
    }


# -- inbox payloads -------------------------------------------------------------------------------

text = st.text()
observations = st.one_of(
    st.builds(
        ListenerJoined,
        source=text,
        at=st.integers(min_value=0, max_value=2**40),
        mount=text,
        client_id=text,
        ip=text,
        user_agent=text,
        referrer=text,
        query=text,
        forwarded_for=text,
    ),
    st.builds(
        ListenerLeft,
        source=text,
        at=st.integers(min_value=0, max_value=2**40),
        mount=text,
        duration=st.integers(min_value=0, max_value=2**40),
        client_id=text,
        ip=text,
        user_agent=text,
        referrer=text,
        query=text,
        forwarded_for=text,
    ),
)


@given(observations)
def test_encode_decode_round_trip(observation: ListenerJoined | ListenerLeft) -> None:
    decoded = decode(encode(observation))
    assert decoded == observation
    assert type(decoded) is type(observation)


def test_payload_names_its_type() -> None:
    assert encode(joined("1", "P")).startswith('{"type":"listener_joined",')
    assert encode(left("1", "P", 5)).startswith('{"type":"listener_left",')


def test_decode_ignores_keys_it_does_not_know() -> None:
    payload = encode(left("1", "P", 5))[:-1] + ',"sent":12345}'
    assert decode(payload) == left("1", "P", 5)


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[]",
        '{"type":"tick","at":1}',
        '{"source":"s","at":1,"mount":"/m","client_id":"1","ip":"","user_agent":""}',
        '{"type":"listener_joined","source":"s","at":1,"mount":"/m","ip":"","user_agent":""}',
        '{"type":"listener_left","source":"s","at":"1","mount":"/m","duration":3}',
        '{"type":"listener_left","source":"s","at":1,"mount":"/m","duration":true}',
        '{"type":"listener_joined","source":"s","at":1,"mount":"/m","client_id":1,'
        '"ip":"","user_agent":""}',
    ],
)
def test_decode_refuses_what_encode_never_writes(payload: str) -> None:
    with pytest.raises(ValueError, match="inbox payload"):
        decode(payload)
