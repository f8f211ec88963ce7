"""End to end: a real Icecast 2.4, real listeners, `audimeter run`, and a recording Matomo.

Every test asserts the exact request stream Matomo receives for each listener, and replays it
through the visit model (Matomo's rules from DOMAIN.md) to check the visit Matomo would show.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.icecast import IcecastServer, Listener, SourceClient
from tests.support.matomo import DEFAULT_TOKEN, RecordingMatomo, VisitModel

from .conftest import MOUNT

pytestmark = pytest.mark.icecast

POLL = 0.5
KEEPALIVE = 4
VISIT_LENGTH = 10
VLC = "VLC/3.0.18 LibVLC/3.0.18"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def write_config(
    tmp_path: Path,
    icecast: IcecastServer,
    matomo: RecordingMatomo | None,
    extra: str = "",
    **source: object,
) -> Path:
    """A config for this Icecast; `source` adds TOML values to the source, `extra` whole tables."""
    settings = {"poll_interval": POLL, "outage_grace": 30, **source}
    lines = [
        "[state]",
        f'path = "{tmp_path / "state.db"}"',
        "[[sources]]",
        'name = "main"',
        'kind = "icecast"',
        f'url = "{icecast.url}"',
        f'username = "{icecast.admin_auth[0]}"',
        f'password = "{icecast.admin_auth[1]}"',
        *(f"{key} = {value}" for key, value in settings.items()),
    ]
    if matomo is not None:
        lines += [
            "[matomo]",
            f'url = "{matomo.url}"',
            "site_id = 1",
            f'token_auth = "{DEFAULT_TOKEN}"',
            f"keepalive_interval = {KEEPALIVE}",
            f"visit_length = {VISIT_LENGTH}",
            "batch_size = 50",
        ]
    path = tmp_path / "audimeter.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def by_visitor(matomo: RecordingMatomo) -> dict[str, list[dict[str, str]]]:
    streams: dict[str, list[dict[str, str]]] = {}
    for request in matomo.requests:
        streams.setdefault(request.params["cid"], []).append(request.params)
    return streams


def ended(matomo: RecordingMatomo, count: int = 1) -> bool:
    return sum(1 for r in matomo.requests if r.params.get("e_a") == "end") >= count


def check_stream(
    stream: list[dict[str, str]],
    *,
    ip: str,
    ua: str,
    connected: tuple[float, float],
    left: tuple[float, float],
) -> tuple[int, int]:
    """Assert one session's exact requests; return its start and end time.

    `connected` and `left` bracket the true connect and disconnect times as the test saw them.
    """
    start = stream[0]
    s = int(start["cdt"])
    assert start["new_visit"] == "1"
    assert start["action_name"] == f"main {MOUNT}"
    assert start["url"].endswith(MOUNT)
    assert connected[0] - 2 <= s <= connected[1] + 1, (s, connected)
    end = stream[-1]
    assert end["e_a"] == "end"
    e = int(end["cdt"]) + 1 if int(end["cdt"]) > s else s + int(end["e_v"])
    assert left[0] - POLL - 2 <= e <= left[1] + 1, (e, left)
    n = (e - s) // KEEPALIVE
    expected: list[tuple[str, int, int | None]] = [("pageview", s, None)]
    expected += [("keep-alive", s + KEEPALIVE * k - 1, KEEPALIVE) for k in range(1, n + 1)]
    expected += [("end", max(s, e - 1), e - s - KEEPALIVE * n)]
    actual = [
        (p.get("e_a", "pageview"), int(p["cdt"]), int(p["e_v"]) if "e_v" in p else None)
        for p in stream
    ]
    assert actual == expected
    for params in stream:
        assert (params["idsite"], params["rec"], params["cip"], params["ua"]) == ("1", "1", ip, ua)
        if "e_a" in params:
            assert (params["e_c"], params["e_n"]) == ("Listening", f"main {MOUNT}")
    return s, e


def listen(icecast: IcecastServer, seconds: float, bind: str, ua: str) -> tuple[float, float]:
    with Listener(icecast, MOUNT, bind=bind, user_agent=ua) as listener:
        connected = time.time()
        assert listener.wait_for_bytes(1000)
        time.sleep(seconds)
    return connected, time.time()


def test_short_listener_is_one_visit_of_the_true_length(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    with AudimeterProcess(write_config(tmp_path, icecast, matomo)):
        before = time.time()
        connected, left = listen(icecast, 2.5, "127.0.0.11", VLC)
        wait_for(lambda: ended(matomo), 15, "the end of the session")
    (stream,) = by_visitor(matomo).values()
    s, e = check_stream(
        stream, ip="127.0.0.11", ua=VLC, connected=(before, connected), left=(left - 0.1, left)
    )
    (visit,) = matomo.model(VISIT_LENGTH).visits()
    assert (visit.total_time, visit.ip, visit.user_agent) == (e - s, "127.0.0.11", VLC)


def test_listener_longer_than_visit_length_stays_one_online_visit(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    online: list[int] = []
    with (
        AudimeterProcess(write_config(tmp_path, icecast, matomo)),
        Listener(icecast, MOUNT, bind="127.0.0.12", user_agent=FIREFOX) as listener,
    ):
        connected = time.time()
        assert listener.wait_for_bytes(1000)
        for _ in range(8):  # over 2 visit lengths, sampling Matomo's real-time counter
            time.sleep(3)
            online.append(matomo.model(VISIT_LENGTH).online(time.time(), minutes=3))
        listener.close()
        left = time.time()
        wait_for(lambda: ended(matomo), 15, "the end of the session")
    (stream,) = by_visitor(matomo).values()
    s, e = check_stream(
        stream,
        ip="127.0.0.12",
        ua=FIREFOX,
        connected=(connected - 1, connected),
        left=(left - 0.1, left),
    )
    assert e - s >= 2 * VISIT_LENGTH
    model = matomo.model(VISIT_LENGTH)
    (visit,) = model.visits()
    assert visit.total_time == e - s
    assert not visit.out_of_order
    assert online == [1] * 8
    # Gone from the real-time widgets within keepalive_interval + 3 minutes of leaving.
    assert model.online(left + KEEPALIVE + 180) == 0


def test_two_listeners_behind_one_address_with_one_player_are_two_visits(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    with AudimeterProcess(write_config(tmp_path, icecast, matomo)):
        with (
            Listener(icecast, MOUNT, bind="127.0.0.13", user_agent=VLC),
            Listener(icecast, MOUNT, bind="127.0.0.13", user_agent=VLC),
        ):
            connected = time.time()
            time.sleep(5)
        left = time.time()
        wait_for(lambda: ended(matomo, 2), 15, "the end of both sessions")
    streams = by_visitor(matomo)
    assert len(streams) == 2
    for stream in streams.values():
        check_stream(
            stream,
            ip="127.0.0.13",
            ua=VLC,
            connected=(connected - 1, connected),
            left=(left - 0.1, left),
        )
    visits = matomo.model(VISIT_LENGTH).visits()
    assert len(visits) == 2
    assert len({v.visitor_id for v in visits}) == 2


def test_returning_listener_is_the_same_visitor_in_a_new_visit(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    with AudimeterProcess(write_config(tmp_path, icecast, matomo)):
        listen(icecast, 1.5, "127.0.0.14", VLC)
        wait_for(lambda: ended(matomo), 15, "the end of the first session")
        time.sleep(1.5)
        listen(icecast, 1.5, "127.0.0.14", VLC)
        wait_for(lambda: ended(matomo, 2), 15, "the end of the second session")
    (stream,) = by_visitor(matomo).values()
    assert [p.get("new_visit") for p in stream].count("1") == 2
    visits = matomo.model(VISIT_LENGTH).visits()
    assert len(visits) == 2
    assert visits[0].visitor_id == visits[1].visitor_id


def test_icecast_restart_ends_sessions_and_starts_new_ones(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    with AudimeterProcess(write_config(tmp_path, icecast, matomo)) as audimeter:
        first = Listener(icecast, MOUNT, bind="127.0.0.15", user_agent=VLC).__enter__()
        connected = time.time()
        wait_for(lambda: matomo.requests, 10, "the start of the first session")
        time.sleep(2)
        before_restart = time.time()
        icecast.restart()  # drops every connection; ids restart from a small number
        first.close()
        source.reconnect()
        with Listener(icecast, MOUNT, bind="127.0.0.15", user_agent=VLC):
            reconnected = time.time()
            time.sleep(2.5)
        left = time.time()
        wait_for(lambda: ended(matomo, 2), 20, "the end of both sessions")
        assert "server_restarted" not in audimeter.logs()
    (stream,) = by_visitor(matomo).values()  # same address and player: the same visitor
    split = [i for i, p in enumerate(stream) if p.get("new_visit") == "1"]
    assert split[0] == 0
    assert len(split) == 2
    check_stream(
        stream[: split[1]],
        ip="127.0.0.15",
        ua=VLC,
        connected=(connected - 1, connected),
        left=(before_restart - 0.1, before_restart + 0.1),
    )
    check_stream(
        stream[split[1] :],
        ip="127.0.0.15",
        ua=VLC,
        connected=(reconnected - 1, reconnected),
        left=(left - 0.1, left),
    )
    assert len(matomo.model(VISIT_LENGTH).visits()) == 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopped_mid_session_and_restarted_counts_the_session_once(
    sig: int,
    tmp_path: Path,
    icecast: IcecastServer,
    source: SourceClient,
    matomo: RecordingMatomo,
) -> None:
    config = write_config(tmp_path, icecast, matomo)
    with Listener(icecast, MOUNT, bind="127.0.0.16", user_agent=FIREFOX) as listener:
        connected = time.time()
        assert listener.wait_for_bytes(1000)
        with AudimeterProcess(config) as audimeter:
            wait_for(lambda: len(matomo.requests) >= 2, 15, "a start and a keep-alive")
            code, took = audimeter.stop(sig)
            if sig == signal.SIGTERM:
                assert code == 0
                assert took < 10
                assert "open session(s) kept" in audimeter.logs()
        time.sleep(KEEPALIVE + 1)  # a keep-alive falls due while audimeter is down
        with AudimeterProcess(config) as audimeter:
            time.sleep(KEEPALIVE)
            listener.close()
            left = time.time()
            wait_for(lambda: ended(matomo), 15, "the end of the session")
            assert "1 open session(s) resumed" in audimeter.logs()
    (stream,) = by_visitor(matomo).values()
    counts = Counter(tuple(sorted(p.items())) for p in stream)
    duplicates = sum(n - 1 for n in counts.values())
    if sig == signal.SIGTERM:
        assert duplicates == 0
    else:
        assert duplicates <= 50  # at most the batch in flight at the kill
    unique = list(dict.fromkeys(tuple(sorted(p.items())) for p in stream))
    check_stream(
        [dict(p) for p in unique],
        ip="127.0.0.16",
        ua=FIREFOX,
        connected=(connected - 1, connected),
        left=(left - 0.1, left),
    )
    (visit,) = matomo.model(VISIT_LENGTH).visits()
    assert not visit.out_of_order


def test_matomo_unavailable_for_a_while_then_everything_arrives_once_in_order(
    tmp_path: Path, icecast: IcecastServer, source: SourceClient, matomo: RecordingMatomo
) -> None:
    matomo.fail_with(503)
    with AudimeterProcess(write_config(tmp_path, icecast, matomo)) as audimeter:
        connected, left = listen(icecast, 6, "127.0.0.17", VLC)
        time.sleep(1)
        assert matomo.requests == []
        matomo.recover()
        wait_for(lambda: ended(matomo), 30, "delivery after Matomo recovered")
        assert "HTTP 503" in audimeter.logs()
    assert matomo.failed_posts >= 2
    (stream,) = by_visitor(matomo).values()
    assert len({tuple(sorted(p.items())) for p in stream}) == len(stream)
    s, e = check_stream(
        stream,
        ip="127.0.0.17",
        ua=VLC,
        connected=(connected - 1, connected),
        left=(left - 0.1, left),
    )
    (visit,) = VisitModel(matomo.requests, VISIT_LENGTH).visits()
    assert visit.total_time == e - s
