"""Tests of the Matomo test double: the VisitModel oracle and RecordingMatomo over real HTTP."""

from __future__ import annotations

import calendar
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.matomo import (
    DEFAULT_TOKEN,
    TOKEN_REFUSED,
    RecordingMatomo,
    TrackedRequest,
    VisitModel,
    parse_cdt,
    request_time,
)

T0 = calendar.timegm((2024, 5, 1, 12, 0, 0))
MIDNIGHT = calendar.timegm((2024, 5, 2, 0, 0, 0))
CID_A = "aaaaaaaaaaaaaaaa"
CID_B = "bbbbbbbbbbbbbbbb"
STREAM = "https://radio.example/live.mp3"


def _req(at: int, cid: str | None, **extra: str) -> dict[str, str]:
    params = {"idsite": "1", "rec": "1", "cdt": str(at)}
    if cid is not None:
        params["cid"] = cid
    params.update(extra)
    return params


def pv(dt: int, cid: str | None = CID_A, base: int = T0, **extra: str) -> dict[str, str]:
    """A pageview ``dt`` seconds after ``base``."""
    return _req(base + dt, cid, **{"url": STREAM, "action_name": "Live", **extra})


def ev(dt: int, cid: str | None = CID_A, base: int = T0, **extra: str) -> dict[str, str]:
    """An event ``dt`` seconds after ``base``."""
    return _req(base + dt, cid, **{"e_c": "Listening", "e_a": "tick", "url": STREAM, **extra})


def ping(dt: int, cid: str | None = CID_A, base: int = T0, **extra: str) -> dict[str, str]:
    """A ping ``dt`` seconds after ``base``."""
    return _req(base + dt, cid, **{"ping": "1", "url": STREAM, **extra})


# --------------------------------------------------------------------------- VisitModel

# (visitor, first offset, last offset, total_time, number of actions); offsets from T0
Expected = tuple[str, int, int, int, int]

MODEL_CASES: list[tuple[str, list[dict[str, str]], int, list[Expected]]] = [
    (
        "domain: pageview then pings every 10 s for 190 s -> one visit of 51 s",
        [pv(0)] + [ping(t) for t in range(10, 191, 10)],
        60,
        [(CID_A, 0, 0, 51, 1)],
    ),
    (
        "domain: pageview then an event every 50 s for 190 s -> one visit of 151 s",
        [pv(0)] + [ev(t) for t in range(50, 191, 50)],
        60,
        [(CID_A, 0, 150, 151, 4)],
    ),
    ("a single pageview shows 0 s", [pv(0)], 1800, [(CID_A, 0, 0, 0, 1)]),
    (
        "new_visit=1 forces a new visit",
        [pv(0), ev(10), pv(20, new_visit="1"), ev(30)],
        1800,
        [(CID_A, 0, 10, 11, 2), (CID_A, 20, 30, 11, 2)],
    ),
    (
        "two cids are two visits",
        [pv(0), pv(5, cid=CID_B), ev(10), ev(40, cid=CID_B)],
        1800,
        [(CID_A, 0, 10, 11, 2), (CID_B, 5, 40, 36, 2)],
    ),
    (
        "a gap of exactly visit_length starts a new visit",
        [pv(0), ev(60)],
        60,
        [(CID_A, 0, 0, 0, 1), (CID_A, 60, 60, 0, 1)],
    ),
    ("a gap just under visit_length joins", [pv(0), ev(59)], 60, [(CID_A, 0, 59, 60, 2)]),
    (
        "pings cannot keep a visit alive; the next event opens a new one",
        [pv(0), ping(30), ping(50), ev(70)],
        60,
        [(CID_A, 0, 0, 51, 1), (CID_A, 70, 70, 0, 1)],
    ),
    (
        "a ping never lowers the total time",
        [pv(0), ev(40), ping(20)],
        1800,
        [(CID_A, 0, 40, 41, 2)],
    ),
    (
        "an event that arrives late lowers the total but not last_action",
        [pv(0), ev(100), ev(50)],
        1800,
        [(CID_A, 0, 100, 51, 3)],
    ),
    (
        "an event older than the first action zeroes the total",
        [pv(100), ev(50)],
        1800,
        [(CID_A, 100, 100, 0, 2)],
    ),
    (
        "uid takes priority over cid",
        [pv(0, uid="listener-1"), ev(10, cid=CID_B, uid="listener-1")],
        1800,
        [("", 0, 10, 11, 2)],
    ),
    (
        "without cid, same ua and ip are one visitor",
        [
            pv(0, cid=None, ua="VLC/3.0", cip="192.0.2.1"),
            ev(10, cid=None, ua="VLC/3.0", cip="192.0.2.1"),
        ],
        1800,
        [("", 0, 10, 11, 2)],
    ),
    (
        "without cid, another ip is another visitor",
        [
            pv(0, cid=None, ua="VLC/3.0", cip="192.0.2.1"),
            ev(10, cid=None, ua="VLC/3.0", cip="192.0.2.2"),
        ],
        1800,
        [("", 0, 0, 0, 1), ("", 10, 10, 0, 1)],
    ),
    (
        "the same cid on two sites is two visits",
        [pv(0), ev(10, idsite="2")],
        1800,
        [(CID_A, 0, 0, 0, 1), (CID_A, 10, 10, 0, 1)],
    ),
    ("requests without rec=1 are ignored", [pv(0), ev(10, rec="0")], 1800, [(CID_A, 0, 0, 0, 1)]),
    (
        "a half event or a bare request is a pageview (measured on Matomo 5.0.2)",
        [pv(0), _req(T0 + 20, CID_A, e_c="Listening", e_a=""), _req(T0 + 30, CID_A)],
        1800,
        [(CID_A, 0, 30, 31, 3)],
    ),
    (
        "without cid, a request joins the live visit of its address and player, whatever its cid",
        [
            pv(0, ua="VLC/3.0", cip="192.0.2.1"),
            ev(10, cid=None, ua="VLC/3.0", cip="192.0.2.1"),
            ev(20, cid=None, ua="VLC/3.0", cip="192.0.2.2"),
        ],
        1800,
        [(CID_A, 0, 10, 11, 2), ("", 20, 20, 0, 1)],
    ),
    ("a lone ping creates no visit", [ping(0), ping(10)], 1800, []),
]


@pytest.mark.parametrize(
    ("requests", "visit_length", "expected"),
    [pytest.param(r, vl, e, id=name) for name, r, vl, e in MODEL_CASES],
)
def test_visit_model_cases(
    requests: list[dict[str, str]], visit_length: int, expected: list[Expected]
) -> None:
    visits = VisitModel(requests, visit_length=visit_length).visits()
    got = [
        (v.visitor_id, v.first_action - T0, v.last_action - T0, v.total_time, len(v.actions))
        for v in visits
    ]
    # "" in the table means "some derived id": compare it only for equality across rows.
    want = [(g[0] if e[0] == "" else e[0], *e[1:]) for g, e in zip(got, expected, strict=False)]
    assert got == want
    assert len(visits) == len(expected)


def test_derived_visitor_ids_are_stable_and_distinct() -> None:
    uid_visit = VisitModel([pv(0, uid="listener-1")]).visits()[0]
    same_uid = VisitModel([pv(0, cid=CID_B, uid="listener-1")]).visits()[0]
    assert uid_visit.visitor_id == same_uid.visitor_id
    assert len(uid_visit.visitor_id) == 16
    assert uid_visit.visitor_id != CID_A


@pytest.mark.parametrize(
    ("requests", "visit_length", "flag"),
    [
        pytest.param([pv(0), ev(10), ev(20)], 1800, False, id="in-order"),
        pytest.param([pv(0), ev(20), ev(10)], 1800, True, id="late event"),
        pytest.param([pv(0), ping(20), ev(10)], 1800, True, id="event older than a ping"),
        pytest.param([pv(0), ev(20), ping(10)], 1800, True, id="late ping"),
    ],
)
def test_out_of_order_is_flagged(
    requests: list[dict[str, str]], visit_length: int, flag: bool
) -> None:
    (visit,) = VisitModel(requests, visit_length=visit_length).visits()
    assert visit.out_of_order is flag


def test_visit_fields_come_from_the_first_action_and_exclude_pings() -> None:
    requests = [
        pv(0, ua="VLC/3.0.18 LibVLC/3.0.18", cip="198.51.100.7"),
        ping(10, cip="198.51.100.8"),
        ev(20, ua="other", cip="198.51.100.9", url="https://radio.example/other"),
    ]
    (visit,) = VisitModel(requests, visit_length=60).visits()
    assert visit.ip == "198.51.100.7"
    assert visit.user_agent == "VLC/3.0.18 LibVLC/3.0.18"
    assert visit.entry_url == STREAM
    assert visit.pings == 1
    assert [a.get("e_c") for a in visit.actions] == [None, "Listening"]
    assert visit.site_id == "1"


@pytest.mark.parametrize(
    ("requests", "expected"),
    [
        pytest.param(
            [pv(-40, base=MIDNIGHT), ev(-10, base=MIDNIGHT), ev(10, base=MIDNIGHT)],
            [(MIDNIGHT - 40, MIDNIGHT - 10), (MIDNIGHT + 10, MIDNIGHT + 10)],
            id="event after midnight",
        ),
        pytest.param(
            [pv(-40, base=MIDNIGHT), ping(10, base=MIDNIGHT)],
            [(MIDNIGHT - 40, MIDNIGHT - 40)],
            id="ping after midnight is dropped",
        ),
    ],
)
def test_midnight_utc_starts_a_new_visit(
    requests: list[dict[str, str]], expected: list[tuple[int, int]]
) -> None:
    model = VisitModel(requests, visit_length=1800)
    assert [(v.first_action, v.last_action) for v in model.visits()] == expected


def test_dropped_pings_and_ignored_requests_are_kept() -> None:
    model = VisitModel([pv(0), ping(70), ev(80, rec="0")], visit_length=60)
    assert len(model.dropped_pings) == 1
    assert model.dropped_pings[0]["cdt"] == str(T0 + 70)
    assert len(model.ignored) == 1


@pytest.mark.parametrize(
    ("requests", "now", "minutes", "expected"),
    [
        pytest.param(
            [pv(0)] + [ping(t) for t in range(10, 191, 10)],
            T0 + 170,
            3,
            1,
            id="pageview still within 3 min",
        ),
        pytest.param(
            [pv(0)] + [ping(t) for t in range(10, 191, 10)],
            T0 + 190,
            3,
            0,
            id="pings alone do not count",
        ),
        pytest.param(
            [pv(0)] + [ev(t) for t in range(50, 191, 50)], T0 + 190, 3, 1, id="events count"
        ),
        pytest.param(
            [pv(0), pv(0, cid=CID_B), ev(150)], T0 + 200, 3, 1, id="one of two visitors idle"
        ),
        pytest.param(
            [pv(0), pv(0, cid=CID_B), ev(150)],
            T0 + 200,
            30,
            3,
            id="visitor log window counts every visit",
        ),
        pytest.param([pv(0)], T0 + 180, 3, 1, id="boundary is inclusive"),
    ],
)
def test_online_counts_visits_by_last_action(
    requests: list[dict[str, str]], now: int, minutes: int, expected: int
) -> None:
    assert VisitModel(requests, visit_length=60).online(now, minutes) == expected


def test_online_can_filter_by_site() -> None:
    model = VisitModel([pv(0), pv(0, idsite="2")])
    assert model.online(T0 + 10) == 2
    assert model.online(T0 + 10, site_id="2") == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1714564800", 1714564800),
        ("1714564800.9", 1714564800),
        ("2024-05-01 12:00:00", T0),
        ("", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_cdt(value: str | None, expected: int | None) -> None:
    assert parse_cdt(value) == expected


def test_request_time_rules() -> None:
    assert request_time({"cdt": str(T0)}, T0 + 5.7) == T0
    assert request_time({"cdt": "2024-05-01 12:00:00"}, None) == T0
    # A cdt in the future is ignored.
    assert request_time({"cdt": str(T0 + 60)}, T0 + 5.7) == T0 + 5
    assert request_time({}, T0 + 5.7) == T0 + 5
    with pytest.raises(ValueError, match="cdt"):
        request_time({}, None)


def test_model_uses_received_at_without_cdt() -> None:
    base = {"idsite": "1", "rec": "1", "cid": CID_A, "url": STREAM}
    tracked = [
        TrackedRequest(dict(base), T0 + 0.4, 0, 0),
        TrackedRequest({**base, "ping": "1"}, T0 + 30.9, 1, 0),
    ]
    (visit,) = VisitModel(tracked, visit_length=60).visits()
    assert (visit.first_action, visit.total_time) == (T0, 31)


# --------------------------------------------------------------------------- RecordingMatomo


@pytest.fixture
def matomo() -> Iterator[RecordingMatomo]:
    with RecordingMatomo() as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def bulk(
    client: httpx.Client, server: RecordingMatomo, requests: list[Any], token: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"requests": requests}
    if token is not None:
        body["token_auth"] = token
    return client.post(server.url + "matomo.php", json=body)


def api(
    client: httpx.Client, server: RecordingMatomo, method: str, expect: int = 200, **params: str
) -> Any:
    query = {"module": "API", "method": method, "format": "json", **params}
    response = client.get(server.url + "index.php", params=query)
    assert response.status_code == expect
    return response.json()


def test_url_is_local_with_trailing_slash(matomo: RecordingMatomo) -> None:
    assert matomo.url.startswith("http://127.0.0.1:")
    assert matomo.url.endswith("/")
    assert matomo.tracking_url == matomo.url + "matomo.php"


def test_bulk_accepts_query_strings_and_objects(
    matomo: RecordingMatomo, client: httpx.Client
) -> None:
    before = time.time()
    response = bulk(
        client,
        matomo,
        [
            f"?idsite=1&rec=1&cid={CID_A}&url=https%3A%2F%2Fradio.example%2Flive.mp3&action_name=",
            {"idsite": 1, "rec": 1, "cid": CID_B, "e_c": "Listening", "e_a": "tick", "e_v": 2.5},
        ],
    )
    assert response.status_code == 200
    assert response.json() == {"status": "success", "tracked": 2, "invalid": 0}
    first, second = matomo.requests
    assert first.params == {
        "idsite": "1",
        "rec": "1",
        "cid": CID_A,
        "url": STREAM,
        "action_name": "",
    }
    assert second.params["idsite"] == "1"
    assert second.params["e_v"] == "2.5"
    assert (first.batch, first.index, second.batch, second.index) == (0, 0, 0, 1)
    assert before <= first.received_at <= time.time()
    (batch,) = matomo.batches
    assert batch.status == 200
    assert [p["cid"] for p in batch.requests] == [CID_A, CID_B]


def test_requests_without_rec_are_accepted_but_not_recorded(
    matomo: RecordingMatomo, client: httpx.Client
) -> None:
    response = bulk(
        client, matomo, [f"?idsite=1&cid={CID_A}&url=x", f"?idsite=1&rec=1&cid={CID_A}"]
    )
    assert response.json() == {"status": "success", "tracked": 2, "invalid": 0}
    assert [r.index for r in matomo.requests] == [1]
    assert matomo.batches[0].ignored_indices == [0]


@pytest.mark.parametrize(
    ("extra", "token", "tracked"),
    [
        pytest.param("&cip=192.0.2.1", None, False, id="cip without token"),
        pytest.param("&cip=192.0.2.1", "f" * 32, False, id="cip with a wrong token"),
        pytest.param("&cip=192.0.2.1", DEFAULT_TOKEN, True, id="cip with the token"),
        pytest.param(
            f"&cip=192.0.2.1&token_auth={DEFAULT_TOKEN}",
            None,
            True,
            id="cip with a per-request token",
        ),
        pytest.param("&country=fr", None, False, id="country override without token"),
        pytest.param(f"&cdt={int(time.time()) - 90000}", None, False, id="cdt of 25 h"),
        pytest.param(
            f"&cdt={int(time.time()) - 90000}", DEFAULT_TOKEN, True, id="cdt of 25 h with token"
        ),
        pytest.param(f"&cdt={int(time.time()) - 3600}", None, True, id="cdt of 1 h"),
        pytest.param("&cid=xyz", DEFAULT_TOKEN, False, id="malformed cid"),
        pytest.param("&idsite=7", DEFAULT_TOKEN, False, id="unknown site"),
    ],
)
def test_validation_like_matomo(
    matomo: RecordingMatomo, client: httpx.Client, extra: str, token: str | None, tracked: bool
) -> None:
    response = bulk(client, matomo, [f"?idsite=1&rec=1&cid={CID_A}&url=x{extra}"], token)
    assert response.status_code == 200
    assert response.json() == {
        "status": "success",
        "tracked": int(tracked),
        "invalid": int(not tracked),
    }
    assert len(matomo.requests) == int(tracked)


def test_per_request_token_is_redacted(matomo: RecordingMatomo, client: httpx.Client) -> None:
    bulk(client, matomo, [f"?idsite=1&rec=1&cip=192.0.2.1&token_auth={DEFAULT_TOKEN}"])
    (request,) = matomo.requests
    assert request.params["token_auth"] != DEFAULT_TOKEN
    assert DEFAULT_TOKEN not in repr(matomo.batches)


@pytest.mark.parametrize("superuser", [False, True])
def test_invalid_indices_only_for_superuser(client: httpx.Client, superuser: bool) -> None:
    with RecordingMatomo(superuser=superuser, site_ids={1, 2}) as server:
        response = bulk(
            client,
            server,
            [
                "?idsite=1&rec=1",
                "?idsite=9&rec=1",
                "?idsite=2&rec=1",
                "?idsite=1&rec=1&cip=1.2.3.4",
            ],
        )
        body = response.json()
        assert (body["tracked"], body["invalid"]) == (2, 2)
        if superuser:
            assert body["invalid_indices"] == [1, 3]
        else:
            assert "invalid_indices" not in body
        assert server.batches[0].invalid_indices == [1, 3]


def test_fail_with_count_then_success(matomo: RecordingMatomo, client: httpx.Client) -> None:
    matomo.fail_with(503, count=2)
    statuses = [
        bulk(client, matomo, [f"?idsite=1&rec=1&cid={CID_A}&url=x"]).status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    assert matomo.failed_posts == 2
    assert [b.injected for b in matomo.batches] == [True, True, False]
    assert [b.requests[0]["cid"] for b in matomo.batches] == [CID_A] * 3
    assert [r.batch for r in matomo.requests] == [2]


def test_fail_until_recover_with_custom_body(matomo: RecordingMatomo, client: httpx.Client) -> None:
    matomo.fail_with(500, body="<html>oops</html>")
    for _ in range(3):
        response = bulk(client, matomo, ["?idsite=1&rec=1"])
        assert (response.status_code, response.text) == (500, "<html>oops</html>")
    matomo.recover()
    assert bulk(client, matomo, ["?idsite=1&rec=1"]).status_code == 200
    assert matomo.failed_posts == 3
    assert len(matomo.requests) == 1


def test_mark_invalid(matomo: RecordingMatomo, client: httpx.Client) -> None:
    matomo.mark_invalid(lambda p: p.get("cid") == CID_B)
    response = bulk(
        client, matomo, [f"?idsite=1&rec=1&cid={CID_A}", f"?idsite=1&rec=1&cid={CID_B}"]
    )
    assert response.json() == {"status": "success", "tracked": 1, "invalid": 1}
    assert [r.params["cid"] for r in matomo.requests] == [CID_A]
    matomo.recover()
    assert bulk(client, matomo, [f"?idsite=1&rec=1&cid={CID_B}"]).json()["tracked"] == 1


def test_delay_holds_the_answer(matomo: RecordingMatomo, client: httpx.Client) -> None:
    matomo.delay(0.3)
    started = time.monotonic()
    assert bulk(client, matomo, ["?idsite=1&rec=1"]).status_code == 200
    assert time.monotonic() - started >= 0.3
    matomo.recover()
    started = time.monotonic()
    bulk(client, matomo, ["?idsite=1&rec=1"])
    assert time.monotonic() - started < 0.3


def test_a_slow_answer_still_tracks(matomo: RecordingMatomo) -> None:
    matomo.delay(1.0)
    with httpx.Client(timeout=0.2) as impatient, pytest.raises(httpx.TimeoutException):
        bulk(impatient, matomo, ["?idsite=1&rec=1"])
    assert len(matomo.requests) == 1


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"requests": "?idsite=1&rec=1"}', b'{"requests": [5]}', b"[]"],
)
def test_malformed_body_is_400(
    matomo: RecordingMatomo, client: httpx.Client, content: bytes
) -> None:
    response = client.post(matomo.url + "matomo.php", content=content)
    assert response.status_code == 400
    assert response.json() == {"status": "error", "tracked": 0, "invalid": 0}
    assert matomo.failed_posts == 1
    assert matomo.requests == []


def test_clear(matomo: RecordingMatomo, client: httpx.Client) -> None:
    bulk(client, matomo, ["?idsite=1&rec=1"])
    matomo.clear()
    assert (matomo.requests, matomo.batches, matomo.failed_posts) == ([], [], 0)


def test_concurrent_posts_are_all_recorded(matomo: RecordingMatomo) -> None:
    def worker(n: int) -> None:
        with httpx.Client(timeout=5) as c:
            for i in range(10):
                bulk(c, matomo, [f"?idsite=1&rec=1&cid={n:016x}&n={i}"] * 3)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(matomo.requests) == 150
    assert len(matomo.batches) == 50
    assert sorted({r.batch for r in matomo.requests}) == list(range(50))


def test_recorded_requests_feed_the_model(matomo: RecordingMatomo, client: httpx.Client) -> None:
    now = int(time.time())
    bulk(
        client,
        matomo,
        [
            f"?idsite=1&rec=1&cid={CID_A}&url=x&cdt={now - 200}",
            f"?idsite=1&rec=1&cid={CID_A}&ping=1&cdt={now - 150}",
            f"?idsite=1&rec=1&cid={CID_B}&e_c=L&e_a=t&cdt={now - 10}",
        ],
    )
    model = matomo.model(visit_length=1800)
    assert [(v.visitor_id, v.total_time) for v in model.visits()] == [(CID_A, 51), (CID_B, 0)]
    assert model.online(now) == 1


# --------------------------------------------------------------------------- Reporting API
# The answers below are those a real Matomo 5.0.2 gave (tests/realmatomo/test_check.py runs
# `audimeter check` against one).


def test_api_version(client: httpx.Client) -> None:
    with RecordingMatomo(version="4.16.1") as server:
        assert api(client, server, "API.getMatomoVersion", token_auth=DEFAULT_TOKEN) == {
            "value": "4.16.1"
        }
        assert server.api_calls == ["API.getMatomoVersion"]


def test_api_site_from_id(client: httpx.Client) -> None:
    site = {"idsite": 1, "name": "Site 1", "main_url": "https://example.org"}
    unknown = "An unexpected website was found in the request: website id was set to '5' ."
    denied = "You can't access this resource as it requires 'view' access for the website id = 5."
    with RecordingMatomo(superuser=True) as server:
        assert (
            api(client, server, "SitesManager.getSiteFromId", idSite="1", token_auth=DEFAULT_TOKEN)
            == site
        )
        missing = api(
            client, server, "SitesManager.getSiteFromId", idSite="5", token_auth=DEFAULT_TOKEN
        )
        assert missing == {"result": "error", "message": unknown}
    with RecordingMatomo() as server:
        # Matomo does not tell other users whether a site they may not see exists.
        missing = api(
            client,
            server,
            "SitesManager.getSiteFromId",
            expect=401,
            idSite="5",
            token_auth=DEFAULT_TOKEN,
        )
        assert missing == {"result": "error", "message": denied}


@pytest.mark.parametrize(
    ("superuser", "access", "lists"),
    [
        (True, None, ([1, 2], [], [], True)),
        (False, None, ([], [1, 2], [], False)),
        (False, {1: "admin", 2: "view"}, ([1], [], [2], False)),
        (False, {2: "write"}, ([], [2], [], False)),
    ],
)
def test_api_sites_by_role(
    client: httpx.Client,
    superuser: bool,
    access: dict[int, str] | None,
    lists: tuple[list[int], list[int], list[int], bool],
) -> None:
    with RecordingMatomo(site_ids={2, 1}, superuser=superuser, access=access) as server:
        answers = tuple(
            api(client, server, method, token_auth=DEFAULT_TOKEN)
            for method in (
                "SitesManager.getSitesIdWithAdminAccess",
                "SitesManager.getSitesIdWithWriteAccess",
                "SitesManager.getSitesIdWithViewAccess",
                "UsersManager.hasSuperUserAccess",
            )
        )
    assert answers == (*lists[:3], {"value": lists[3]})


def test_api_bulk_request(client: httpx.Client) -> None:
    with RecordingMatomo(access={1: "view"}) as server:
        response = client.post(
            server.url + "index.php",
            params={"module": "API", "format": "json", "method": "API.getBulkRequest"},
            data={
                "token_auth": DEFAULT_TOKEN,
                "urls[1]": "method=SitesManager.getSiteFromId&idSite=1",
                "urls[0]": "method=SitesManager.getSitesIdWithViewAccess",
                "urls[2]": "method=SitesManager.getSiteFromId&idSite=9",
            },
        )
    assert response.status_code == 200
    assert response.json() == [
        [1],
        {"idsite": 1, "name": "Site 1", "main_url": "https://example.org"},
        {
            "result": "error",
            "message": "You can't access this resource as it requires 'view' access for the"
            " website id = 9.",
        },
    ]


def test_api_without_a_token_sees_no_site(matomo: RecordingMatomo, client: httpx.Client) -> None:
    assert api(client, matomo, "SitesManager.getSitesIdWithWriteAccess") == []
    assert api(client, matomo, "API.getMatomoVersion", expect=401)["result"] == "error"


@pytest.mark.parametrize("token", ["0" * 32, "x"])
def test_api_refuses_a_wrong_token(
    matomo: RecordingMatomo, client: httpx.Client, token: str
) -> None:
    answer = api(client, matomo, "API.getBulkRequest", expect=401, token_auth=token)
    assert answer == {"result": "error", "message": TOKEN_REFUSED}
    # Without module, format and method in the query string, the refusal is an HTML page.
    response = client.post(
        matomo.url + "index.php",
        data={
            "module": "API",
            "format": "json",
            "method": "API.getMatomoVersion",
            "token_auth": token,
        },
    )
    assert (response.status_code, response.headers["content-type"][:9]) == (401, "text/html")


def test_api_token_in_post_body(matomo: RecordingMatomo, client: httpx.Client) -> None:
    response = client.post(
        matomo.url + "index.php?module=API&method=API.getMatomoVersion&format=json",
        data={"token_auth": DEFAULT_TOKEN},
    )
    assert response.json() == {"value": "5.1.0"}


def test_api_unknown_method(matomo: RecordingMatomo, client: httpx.Client) -> None:
    answer = api(
        client, matomo, "SitesManager.getSitesIdWithAtLeastWriteAccess", token_auth=DEFAULT_TOKEN
    )
    assert answer == {
        "result": "error",
        "message": "The method 'getSitesIdWithAtLeastWriteAccess' does not exist or is not"
        " available in the module '\\Piwik\\Plugins\\SitesManager\\API'.",
    }


def test_token_is_never_printed(capfd: pytest.CaptureFixture[str]) -> None:
    token = "feedfacefeedfacefeedfacefeedface"
    with RecordingMatomo(token_auth=token) as server, httpx.Client(timeout=5) as c:
        bulk(c, server, [f"?idsite=1&rec=1&cip=1.2.3.4&token_auth={token}"], token)
        c.get(
            server.url + "index.php", params={"module": "API", "method": "x", "token_auth": token}
        )
        c.post(server.url + "matomo.php", content=json.dumps({"token_auth": token}))
        text = repr(server) + repr(server.batches) + repr(server.requests)
    out, err = capfd.readouterr()
    assert token not in out + err + text


def test_stop_closes_the_port(client: httpx.Client) -> None:
    with RecordingMatomo() as server:
        url = server.url
    with pytest.raises(httpx.ConnectError):
        client.get(url + "index.php")
