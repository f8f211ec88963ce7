"""Session events as Matomo tracking requests."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from audimeter.config import parse_config
from audimeter.events import EndReason, Session, SessionEnded, SessionKeptAlive, SessionStarted
from audimeter.matomo.mapping import RequestMapper, SiteMapping, mapper_for, visitor_id

SESSION = Session("main", "i1", "/live.mp3", "7", "203.0.113.9", "VLC/3.0.18", "", 1000, 0)
MAPPER = RequestMapper("salt", {"main": SiteMapping(3, "http://radio.example:8000")}, 3)
COMMON = {
    "idsite": "3",
    "rec": "1",
    "apiv": "1",
    "cid": visitor_id("salt", SESSION),
    "url": "http://radio.example:8000/live.mp3",
    "cip": "203.0.113.9",
    "ua": "VLC/3.0.18",
}


def test_start_is_a_new_visit_pageview_at_the_connect_time() -> None:
    assert MAPPER.params(SessionStarted(SESSION)) == {
        **COMMON,
        "new_visit": "1",
        "action_name": "main /live.mp3",
        "cdt": "1000",
    }


def test_referrer_when_known() -> None:
    session = Session("main", "i1", "/a", "1", "10.0.0.1", "x", "https://ref.example/", 5, 0)
    assert MAPPER.params(SessionStarted(session))["urlref"] == "https://ref.example/"


def test_keepalive_is_an_event_worth_the_seconds_since_the_previous_request() -> None:
    assert MAPPER.params(SessionKeptAlive(SESSION, 1240, 1120)) == {
        **COMMON,
        "e_c": "Listening",
        "e_a": "keep-alive",
        "e_n": "main /live.mp3",
        "e_v": "120",
        "cdt": "1239",
    }


def test_end_is_dated_so_matomo_shows_the_true_length() -> None:
    params = MAPPER.params(SessionEnded(SESSION, 1300, 1240, EndReason.LEFT))
    assert (params["e_a"], params["e_v"], params["cdt"]) == ("end", "60", "1299")
    # Matomo: visit_total_time = last action - first action + 1
    assert int(params["cdt"]) - SESSION.started_at + 1 == 300


def test_zero_length_session_never_dates_before_its_start() -> None:
    params = MAPPER.params(SessionEnded(SESSION, 1000, 1000, EndReason.LEFT))
    assert params["cdt"] == "1000"


def test_visitor_id_is_stable_salted_and_separates_slots() -> None:
    again = Session("main", "i2", "/other", "99", "203.0.113.9", "VLC/3.0.18", "", 9, 0)
    second = Session("main", "i1", "/live.mp3", "8", "203.0.113.9", "VLC/3.0.18", "", 1000, 1)
    vid = visitor_id("salt", SESSION)
    assert len(vid) == 16
    assert int(vid, 16) >= 0
    assert visitor_id("salt", again) == vid
    assert visitor_id("salt", second) != vid
    assert visitor_id("pepper", SESSION) != vid


def test_query_string_round_trips() -> None:
    query = MAPPER.query_string(SessionStarted(SESSION))
    assert query.startswith("?")
    assert dict(parse_qsl(query[1:])) == MAPPER.params(SessionStarted(SESSION))


def test_sessions_of_a_source_no_longer_configured_still_end() -> None:
    gone = Session("old", "i1", "/x", "1", "10.0.0.1", "VLC", "", 100, 0)
    params = MAPPER.params(SessionEnded(gone, 200, 100, EndReason.SOURCE_LOST))
    assert (params["idsite"], params["e_a"], params["cdt"]) == ("3", "end", "199")
    assert "url" not in params


def test_title_template_public_url_and_site_per_mount() -> None:
    mapper = RequestMapper(
        "salt",
        {
            "main": SiteMapping(
                3, "https://stream.example.org", "Radio {mount} ({source})", {"/talk": 4}
            )
        },
        1,
    )
    music = Session("main", "i", "/music", "1", "10.0.0.1", "VLC", "", 5, 0)
    talk = Session("main", "i", "/talk", "2", "10.0.0.1", "VLC", "", 5, 0)
    start = mapper.params(SessionStarted(music))
    assert (start["idsite"], start["url"], start["action_name"]) == (
        "3",
        "https://stream.example.org/music",
        "Radio /music (main)",
    )
    end = mapper.params(SessionEnded(talk, 9, 5, EndReason.LEFT))
    assert (end["idsite"], end["e_n"]) == ("4", "Radio /talk (main)")


def test_campaign_parameters_go_into_the_landing_url_and_query_parameters_dimensions() -> None:
    mapper = RequestMapper("salt", {"main": SiteMapping(1, "http://r")}, 1, {"app": 3, "x": 4})
    session = Session(
        "main",
        "i",
        "/live",
        "1",
        "10.0.0.1",
        "VLC",
        "",
        5,
        0,
        "utm_source=news&pass=s3cret&utm_campaign=Spring%20Drive&token=t0k&utm_term=jazz"
        "&MTM_CONTENT=banner&pk_vid=1&app=" + "a" * 300,
    )
    start = mapper.params(SessionStarted(session))
    # Matomo reads a visit's campaign from the landing page's URL; only campaign parameters
    # go there, in the listener's order, never the rest of the query (passwords, tokens).
    assert start["url"] == (
        "http://r/live?utm_source=news&utm_campaign=Spring+Drive&utm_term=jazz&MTM_CONTENT=banner"
    )
    assert "_rcn" not in start
    assert "_rck" not in start
    assert start["dimension3"] == "a" * 250
    assert "dimension4" not in start
    alive = mapper.params(SessionKeptAlive(session, 125, 5))
    end = mapper.params(SessionEnded(session, 130, 125, EndReason.LEFT))
    assert alive["url"] == end["url"] == "http://r/live"
    assert alive["dimension3"] == "a" * 250


def test_no_campaign_leaves_the_stream_url_bare() -> None:
    mapper = RequestMapper("salt", {"main": SiteMapping(1, "http://r")}, 1)
    session = Session("main", "i", "/live", "1", "10.0.0.1", "VLC", "", 5, 0, "app=x&pass=y")
    assert mapper.params(SessionStarted(session))["url"] == "http://r/live"


def test_the_title_on_air_goes_with_keepalives_and_ends_when_configured() -> None:
    asked: list[tuple[str, str, int]] = []

    def title_at(source: str, mount: str, at: int) -> str:
        asked.append((source, mount, at))
        return {1239: "Artist - Song", 1299: "x" * 300}.get(at, "")

    sites = {"main": SiteMapping(3, "http://radio.example:8000")}
    mapper = RequestMapper("salt", sites, 3, {"app": 2}, now_playing=(7, title_at))
    start = mapper.params(SessionStarted(SESSION))
    kept = mapper.params(SessionKeptAlive(SESSION, 1240, 1120))
    end = mapper.params(SessionEnded(SESSION, 1300, 1240, EndReason.LEFT))
    silent = mapper.params(SessionKeptAlive(SESSION, 1360, 1300))
    # Looked up at the moment each request is dated (cdt), never for the start.
    assert [at for _, _, at in asked] == [1239, 1299, 1359]
    assert {(source, mount) for source, mount, _ in asked} == {("main", "/live.mp3")}
    assert "dimension7" not in start
    assert kept == {
        **MAPPER.params(SessionKeptAlive(SESSION, 1240, 1120)),
        "dimension7": kept["dimension7"],
    }
    assert kept["dimension7"] == "Artist - Song"
    assert end["dimension7"] == "x" * 250  # Matomo's limit
    assert "dimension7" not in silent  # nothing on air


def test_no_title_dimension_without_the_setting() -> None:
    for event in (
        SessionKeptAlive(SESSION, 1240, 1120),
        SessionEnded(SESSION, 1300, 0, EndReason.LEFT),
    ):
        assert not any(key.startswith("dimension") for key in MAPPER.params(event))


def test_mapper_for_sends_the_title_only_with_now_playing_dimension() -> None:
    source = {"name": "main", "kind": "icecast", "url": "http://127.0.0.1:8000", "password": "p"}
    matomo = {"url": "https://m.example/", "site_id": 3, "token_auth": "t"}
    event = SessionKeptAlive(SESSION, 1240, 1120)
    for setting, expected in ((None, None), (5, "On Air")):
        config = parse_config(
            {"sources": [source], "matomo": {**matomo, "now_playing_dimension": setting}}
            if setting
            else {"sources": [source], "matomo": matomo}
        )
        assert config.matomo is not None
        mapper = mapper_for(config, config.matomo, "salt", lambda source, mount, at: "On Air")
        assert mapper.params(event).get("dimension5") == expected


def _events(session: Session) -> list[SessionStarted | SessionKeptAlive | SessionEnded]:
    at = session.started_at
    return [
        SessionStarted(session),
        SessionKeptAlive(session, at + 120, at),
        SessionEnded(session, at + 130, at + 120, EndReason.LEFT),
        SessionEnded(session, at, at, EndReason.SOURCE_LOST),  # shorter than a second
    ]


QUERIES = [
    "",
    "app=radio%20app&utm_source=news&utm_campaign=Spring%20Drive&pass=x",
    "app=" + "é" * 300,
    "utm_medium=a%26b&app=",
]
LISTENERS = [
    ("203.0.113.9", "VLC/3.0.18", ""),
    ("2001:db8::1", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Äpp/1 +x", "-"),
    ("", "", "https://radio.example/player?x=1&y=ä b"),
    ("::ffff:10.0.0.1", "okhttp/4.11.0", "https://www.google.com/"),
]


def test_query_string_agrees_with_urlencoding_the_params() -> None:
    """The request put together from remembered parts is the parameters, urlencoded, for
    every kind of event, listener, query, site and title, asked again and again."""
    played = {1119: "Artist & Band - Song + Remix", 1129: "x" * 300}
    sites = {
        "main": SiteMapping(3, "http://radio.example:8000", "{source} · {mount} & more", {"/t": 9}),
        "bare": SiteMapping(4, ""),
    }
    mappers = [
        RequestMapper("salt", sites, 5),
        RequestMapper(
            lambda at: f"salt-{at // 86400}",
            sites,
            5,
            {"app": 2, "utm_medium": 8},
            now_playing=(7, lambda source, mount, at: played.get(at, "")),
        ),
    ]
    for mapper in mappers:
        for _round in range(2):
            for source in ("main", "bare", "gone"):
                for mount in ("/live.mp3", "/t"):
                    for query in QUERIES:
                        for ip, agent, referrer in LISTENERS:
                            session = Session(
                                source, "i", mount, "7", ip, agent, referrer, 1000, 2, query
                            )
                            for event in _events(session):
                                for visitor in (None, "0123456789abcdef", "a b/ü"):
                                    expected = "?" + urlencode(mapper.params(event, visitor))
                                    assert mapper.query_string(event, visitor) == expected
