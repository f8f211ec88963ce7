"""The SHOUTcast pollers against emulated DNAS 2 and DNAS 1 servers over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from audimeter.config import SourceConfig
from audimeter.observations import Listener, MountPolled, Observation, SourceSeen, decode_all
from audimeter.sources import SourceError
from audimeter.sources.shoutcast import DNAS1_USER_AGENT, Shoutcast1Poller, Shoutcast2Poller
from tests.support.shoutcast import (
    DNAS1_PASSWORD,
    DNAS2_ADMIN_PASSWORD,
    Dnas1Emulator,
    Dnas2Emulator,
)

VLC = "VLC/3.0.18 LibVLC/3.0.18"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
WRONG = "not-the-password-42"

Poller = Shoutcast1Poller | Shoutcast2Poller


@pytest.fixture
def dnas2() -> Iterator[Dnas2Emulator]:
    with Dnas2Emulator() as server:
        yield server


@pytest.fixture
def dnas1() -> Iterator[Dnas1Emulator]:
    with Dnas1Emulator() as server:
        yield server


def source(url: str, kind: str = "shoutcast2", **settings: Any) -> SourceConfig:
    settings.setdefault(
        "password", DNAS2_ADMIN_PASSWORD if kind == "shoutcast2" else DNAS1_PASSWORD
    )
    return SourceConfig.model_validate(
        {"name": "radio", "kind": kind, "url": url, "timeout": 2, **settings}
    )


def run(scenario: Callable[[httpx.AsyncClient], Awaitable[None]], timeout: float = 2) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            await scenario(client)

    asyncio.run(main())


async def poll(poller: Poller) -> tuple[SourceSeen, dict[str, list[Listener]]]:
    observations: list[Observation] = []

    async def emit(observation: Observation) -> None:
        observations.append(observation)

    await poller.poll(emit)
    seen = observations[0]
    assert isinstance(seen, SourceSeen)
    listings: dict[str, list[Listener]] = {}
    for observation in observations[1:]:
        assert isinstance(observation, MountPolled)
        assert (observation.source, observation.instance) == (seen.source, seen.instance)
        listings[observation.mount] = decode_all(observation.listeners)
    return seen, listings


def audimeter_log(caplog: pytest.LogCaptureFixture) -> str:
    """What audimeter logged; httpx's request log (with queries) is off in the product."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("audimeter"))


# -- DNAS 2 --------------------------------------------------------------------------------------


def test_streams_and_listeners(dnas2: Dnas2Emulator) -> None:
    vlc = dnas2.add_listener(1, "203.0.113.7", VLC, connected=120)
    web = dnas2.add_listener(
        2, "198.51.100.23", FIREFOX, "https://www.example.org/player.html", "192.0.2.44"
    )

    async def scenario(client: httpx.AsyncClient) -> None:
        before = int(time.time())
        seen, listings = await poll(Shoutcast2Poller(source(dnas2.url), client))
        assert seen.source == "radio"
        assert before <= seen.at <= time.time()
        assert seen.mounts == {"/stream", "/talk"}
        assert set(listings) == {"/stream", "/talk"}
        [first] = listings["/stream"]
        assert first._replace(connected=0) == Listener(str(vlc), "203.0.113.7", VLC, 0)
        assert first.connected in (120, 121)
        assert listings["/talk"] == [
            Listener(
                str(web),
                "198.51.100.23",
                FIREFOX,
                listings["/talk"][0].connected,
                "https://www.example.org/player.html",
                "192.0.2.44",
            )
        ]
        assert listings["/talk"][0].connected in (0, 1)

    run(scenario)
    # sid always sent to admin.cgi; the JSON listings and HTTP Basic were good enough.
    admin = [r for r in dnas2.requests if r.path == "/admin.cgi"]
    assert all("sid" in r.query and "pass" not in r.query for r in admin)
    assert {r.basic_user for r in admin} == {"admin"}
    assert {r.query["mode"] for r in admin} == {"bandwidth", "viewjson"}


def test_describe(dnas2: Dnas2Emulator) -> None:
    dnas2.add_listener(1, "192.0.2.1", VLC)
    dnas2.add_listener(1, "192.0.2.2", VLC)

    async def scenario(client: httpx.AsyncClient) -> None:
        info = await Shoutcast2Poller(source(dnas2.url), client).describe()
        assert info.software == "SHOUTcast DNAS 2.6.1.777 (posix(linux x64))"
        assert info.mounts == {"/stream": 2, "/talk": 0}

    run(scenario)


def test_default_stream_paths_and_configured_streams() -> None:
    with Dnas2Emulator(streams={1: "", 2: "", 3: "/jazz"}) as server:
        server.add_listener(3, "192.0.2.3", VLC)

        async def scenario(client: httpx.AsyncClient) -> None:
            seen, _ = await poll(Shoutcast2Poller(source(server.url), client))
            # DNAS names stream 1 "/" and others "/stream/N/" when no streampath is configured.
            assert seen.mounts == {"/", "/stream/2/", "/jazz"}
            only = Shoutcast2Poller(source(server.url, streams=[3, 7]), client)
            seen, listings = await poll(only)
            assert seen.mounts == {"/jazz", "/stream/7/"}
            assert [listener.ip for listener in listings["/jazz"]] == ["192.0.2.3"]
            assert listings["/stream/7/"] == []

        run(scenario)
        listed = {r.query["sid"] for r in server.requests if r.query.get("page") == "3"}
        assert listed == {"1", "2", "3", "7"}


def test_listeners_come_and_go_between_polls(dnas2: Dnas2Emulator) -> None:
    first = dnas2.add_listener(1, "192.0.2.1", VLC)

    async def scenario(client: httpx.AsyncClient) -> None:
        poller = Shoutcast2Poller(source(dnas2.url), client)
        seen, listings = await poll(poller)
        assert [listener.client_id for listener in listings["/stream"]] == [str(first)]
        second = dnas2.add_listener(1, "192.0.2.2", FIREFOX)
        third = dnas2.add_listener(2, "192.0.2.3", VLC)
        again, listings = await poll(poller)
        assert [listener.client_id for listener in listings["/stream"]] == [
            str(first),
            str(second),
        ]
        assert [listener.client_id for listener in listings["/talk"]] == [str(third)]
        dnas2.remove_listener(first)
        dnas2.remove_listener(third)
        last, listings = await poll(poller)
        assert [listener.client_id for listener in listings["/stream"]] == [str(second)]
        assert listings["/talk"] == []
        assert seen.instance == again.instance == last.instance

    run(scenario)


def test_restart_changes_the_instance(dnas2: Dnas2Emulator) -> None:
    dnas2.add_listener(1, "192.0.2.1", VLC)

    async def scenario(client: httpx.AsyncClient) -> None:
        poller = Shoutcast2Poller(source(dnas2.url), client)
        first, _ = await poll(poller)
        second, _ = await poll(poller)
        assert first.instance == second.instance
        assert first.instance.startswith("started:")
        # Read where the process started: an hour before the emulator did.
        assert abs(int(first.instance.split(":")[1]) - (time.time() - 3600)) <= 5

        dnas2.restart()
        uid = dnas2.add_listener(1, "192.0.2.9", VLC)
        third, listings = await poll(poller)
        assert third.instance != first.instance
        assert [listener.client_id for listener in listings["/stream"]] == [str(uid)]
        fourth, _ = await poll(poller)
        assert fourth.instance == third.instance

        # After audimeter restarts, the stored instance is kept while the server runs on.
        resumed = Shoutcast2Poller(source(dnas2.url), client, previous_instance=third.instance)
        assert (await poll(resumed))[0].instance == third.instance
        # One stored from before the restart is not: the instance is named after the new start
        # (uptime comes in whole seconds, so that start may be read a second apart).
        stale = Shoutcast2Poller(source(dnas2.url), client, previous_instance=first.instance)
        renamed = (await poll(stale))[0].instance
        assert renamed.startswith("started:")
        assert abs(int(renamed.split(":")[1]) - int(third.instance.split(":")[1])) <= 1

    run(scenario)


def test_clock_steps_do_not_fake_a_restart(dnas2: Dnas2Emulator) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async def scenario(client: httpx.AsyncClient) -> None:
        poller = Shoutcast2Poller(source(dnas2.url), client, clock)
        first, _ = await poll(poller)
        offset[0] = 7200.0
        ahead, _ = await poll(poller)
        offset[0] = -7200.0
        behind, _ = await poll(poller)
        assert first.instance == ahead.instance == behind.instance

    run(scenario)


def test_a_clock_step_while_audimeter_was_stopped_is_not_a_restart(dnas2: Dnas2Emulator) -> None:
    """The stored sessions' listeners, still listed, moved with the server's start: the clock
    stepped. After a real restart, a listener with a stored uid started elsewhere in time."""
    uid = str(dnas2.add_listener(1, "192.0.2.1", VLC, connected=600))

    def clock() -> float:
        return time.time() - 1800

    async def scenario(client: httpx.AsyncClient) -> None:
        before, listings = await poll(Shoutcast2Poller(source(dnas2.url), client))
        (listener,) = listings["/stream"]
        starts = {uid: before.at - listener.connected}

        stepped = Shoutcast2Poller(
            source(dnas2.url),
            client,
            clock,
            previous_instance=before.instance,
            previous_starts=starts,
        )
        assert (await poll(stepped))[0].instance == before.instance
        # Without the stored sessions, nothing tells the step from a restart.
        unaware = Shoutcast2Poller(
            source(dnas2.url), client, clock, previous_instance=before.instance
        )
        assert (await poll(unaware))[0].instance != before.instance

        dnas2.restart()
        again = str(dnas2.add_listener(1, "192.0.2.1", VLC, connected=5))
        restarted = Shoutcast2Poller(
            source(dnas2.url),
            client,
            clock,
            previous_instance=before.instance,
            previous_starts={again: starts[uid]},  # uids start again: one may be a stored one
        )
        assert (await poll(restarted))[0].instance != before.instance

    run(scenario)


def test_restart_without_uptime_report_is_told_by_listener_ids() -> None:
    with Dnas2Emulator(bandwidth_enabled=False) as server:
        server.add_listener(1, "192.0.2.1", VLC)
        server.add_listener(2, "192.0.2.2", VLC)

        async def scenario(client: httpx.AsyncClient) -> None:
            poller = Shoutcast2Poller(source(server.url), client)
            first, _ = await poll(poller)
            server.add_listener(1, "192.0.2.3", VLC)
            second, _ = await poll(poller)
            assert first.instance == second.instance
            assert first.instance.startswith("seen:")

            server.restart()
            third, listings = await poll(poller)
            # Nobody listening yet: nothing tells the restart, and nothing needs to.
            assert third.instance == first.instance
            assert listings == {"/stream": [], "/talk": []}
            server.add_listener(2, "192.0.2.4", VLC)
            fourth, listings = await poll(poller)
            assert listings["/talk"][0].client_id == "1"
            assert fourth.instance != first.instance
            server.add_listener(2, "192.0.2.5", VLC)
            fifth, _ = await poll(poller)
            assert fifth.instance == fourth.instance

        run(scenario)


def test_wrong_password(dnas2: Dnas2Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="audimeter")

    async def scenario(client: httpx.AsyncClient) -> None:
        poller = Shoutcast2Poller(source(dnas2.url, password=WRONG), client)
        with pytest.raises(SourceError) as failure:
            await poll(poller)
        message = str(failure.value)
        assert "source radio" in message
        assert "credentials refused" in message
        assert WRONG not in message
        with pytest.raises(SourceError, match="credentials refused") as described:
            await poller.describe()
        assert WRONG not in str(described.value)

    run(scenario)
    # Both ways of sending the password were tried.
    admin = [r for r in dnas2.requests if r.path == "/admin.cgi"]
    assert any(r.basic_user == "admin" for r in admin)
    assert any(r.query.get("pass") == WRONG for r in admin)
    assert WRONG not in audimeter_log(caplog)


def test_basic_refused_but_pass_accepted(
    dnas2: Dnas2Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    # DNAS takes HTTP Basic for the user "admin" only; the password then works as pass=.
    caplog.set_level(logging.DEBUG, logger="audimeter")
    dnas2.add_listener(2, "192.0.2.1", VLC)

    async def scenario(client: httpx.AsyncClient) -> None:
        poller = Shoutcast2Poller(source(dnas2.url, username="station"), client)
        _, listings = await poll(poller)
        assert [listener.ip for listener in listings["/talk"]] == ["192.0.2.1"]
        dnas2.clear_requests()
        _, listings = await poll(poller)
        assert [listener.ip for listener in listings["/talk"]] == ["192.0.2.1"]

    run(scenario)
    # The second poll went straight to pass=.
    admin = [r for r in dnas2.requests if r.path == "/admin.cgi"]
    assert admin
    assert all(r.query.get("pass") == DNAS2_ADMIN_PASSWORD and r.basic_user is None for r in admin)
    assert DNAS2_ADMIN_PASSWORD not in audimeter_log(caplog)


def test_json_disabled_falls_back_to_xml() -> None:
    with Dnas2Emulator(json_enabled=False) as server:
        uid = server.add_listener(1, "192.0.2.1", VLC, "http://ref.example/", "203.0.113.5")

        async def scenario(client: httpx.AsyncClient) -> None:
            poller = Shoutcast2Poller(source(server.url), client)
            _, listings = await poll(poller)
            assert listings["/stream"] == [
                Listener(
                    str(uid),
                    "192.0.2.1",
                    VLC,
                    listings["/stream"][0].connected,
                    "http://ref.example/",
                    "203.0.113.5",
                )
            ]
            assert listings["/talk"] == []
            server.clear_requests()
            await poll(poller)

        run(scenario)
        modes = [r.query.get("mode") for r in server.requests if r.query.get("page") == "3"]
        assert modes == ["viewxml", "viewxml"]


def test_failing_stream_is_skipped_and_logged_once(
    dnas2: Dnas2Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    dnas2.add_listener(1, "192.0.2.1", VLC)
    dnas2.broken_listings.add(2)

    async def scenario(client: httpx.AsyncClient) -> None:
        poller = Shoutcast2Poller(source(dnas2.url), client)
        for _ in range(3):
            seen, listings = await poll(poller)
            # Unknown this cycle, not empty: no MountPolled, but the mount stays live.
            assert seen.mounts == {"/stream", "/talk"}
            assert set(listings) == {"/stream"}
        dnas2.broken_listings.clear()
        _, listings = await poll(poller)
        assert set(listings) == {"/stream", "/talk"}

    run(scenario)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "stream 2 (/talk)" in warnings[0].getMessage()
    assert "HTTP 500" in warnings[0].getMessage()


def test_hanging_server_next_to_a_healthy_one(dnas2: Dnas2Emulator) -> None:
    dnas2.add_listener(1, "192.0.2.1", VLC)
    with Dnas2Emulator() as stuck:
        stuck.hang(5)

        async def scenario(client: httpx.AsyncClient) -> None:
            healthy = Shoutcast2Poller(source(dnas2.url), client)
            hanging = Shoutcast2Poller(source(stuck.url), client)
            started = time.monotonic()
            good, bad = await asyncio.gather(poll(healthy), poll(hanging), return_exceptions=True)
            assert not isinstance(good, BaseException)
            assert [listener.ip for listener in good[1]["/stream"]] == ["192.0.2.1"]
            assert isinstance(bad, SourceError)
            assert "did not answer within 0.4 s (the timeout)" in str(bad)
            assert time.monotonic() - started < 2

        run(scenario, timeout=0.4)


# -- DNAS 1 --------------------------------------------------------------------------------------


def test_dnas1_end_to_end(dnas1: Dnas1Emulator) -> None:
    first = dnas1.add_listener(1, "192.0.2.1", "WinampMPEG/5.66", connected=30)

    async def scenario(client: httpx.AsyncClient) -> None:
        poller = Shoutcast1Poller(source(dnas1.url, kind="shoutcast1"), client)
        info = await poller.describe()
        assert info.software == "SHOUTcast DNAS 1.9.8"
        assert info.mounts == {"/": 1}

        seen, listings = await poll(poller)
        assert seen.mounts == {"/"}
        [listener] = listings["/"]
        assert listener._replace(connected=0) == Listener(
            str(first), "192.0.2.1", "WinampMPEG/5.66", 0
        )
        assert listener.connected in (30, 31)

        second = dnas1.add_listener(1, "192.0.2.2", VLC)
        dnas1.remove_listener(first)
        again, listings = await poll(poller)
        assert [listener.client_id for listener in listings["/"]] == [str(second)]
        assert again.instance == seen.instance

        dnas1.restart()
        dnas1.add_listener(1, "192.0.2.3", VLC)
        restarted, listings = await poll(poller)
        assert [listener.client_id for listener in listings["/"]] == ["1"]
        assert restarted.instance != seen.instance

    run(scenario)
    # DNAS 1 answers clients without "Mozilla" in their User-Agent with the audio stream.
    assert {r.user_agent for r in dnas1.requests} == {DNAS1_USER_AGENT}
    assert all(r.query.get("mode") == "viewxml" for r in dnas1.requests)


def test_the_song_on_air_is_in_each_listing(dnas1: Dnas1Emulator, dnas2: Dnas2Emulator) -> None:
    observations: list[Observation] = []

    async def emit(observation: Observation) -> None:
        observations.append(observation)

    async def scenario(client: httpx.AsyncClient) -> None:
        await Shoutcast1Poller(source(dnas1.url, kind="shoutcast1"), client).poll(emit)
        await Shoutcast2Poller(source(dnas2.url), client).poll(emit)

    run(scenario)
    titles = {(o.mount, o.title) for o in observations if isinstance(o, MountPolled)}
    assert titles == {("/", "Some Song"), ("/stream", "Some Song"), ("/talk", "Some Song")}


def test_dnas1_wrong_password(dnas1: Dnas1Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="audimeter")

    async def scenario(client: httpx.AsyncClient) -> None:
        poller = Shoutcast1Poller(source(dnas1.url, kind="shoutcast1", password=WRONG), client)
        with pytest.raises(SourceError) as failure:
            await poll(poller)
        message = str(failure.value)
        assert "source radio" in message
        assert "credentials refused" in message
        assert WRONG not in message

    run(scenario)
    assert WRONG not in audimeter_log(caplog)


def test_dnas1_serves_the_stream_to_non_browsers(dnas1: Dnas1Emulator) -> None:
    # Why the poller sends a Mozilla-compatible User-Agent: without one DNAS 1 starts streaming.
    async def scenario(client: httpx.AsyncClient) -> None:
        with pytest.raises(httpx.HTTPError):
            await client.get(
                dnas1.url + "/admin.cgi",
                params={"pass": DNAS1_PASSWORD, "mode": "viewxml"},
                headers={"User-Agent": "audimeter/0.1.0"},
            )

    run(scenario)


def test_dnas2_is_not_a_dnas1(dnas2: Dnas2Emulator) -> None:
    # kind = "shoutcast1" pointed at a DNAS 2: admin.cgi without sid redirects to index.html.
    async def scenario(client: httpx.AsyncClient) -> None:
        poller = Shoutcast1Poller(
            source(dnas2.url, kind="shoutcast1", password=DNAS2_ADMIN_PASSWORD), client
        )
        with pytest.raises(SourceError, match="shoutcast2"):
            await poller.describe()

    run(scenario)
