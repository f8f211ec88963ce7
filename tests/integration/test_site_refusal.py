"""A site that Matomo refuses to the token never holds up the other sites' requests.

Against the recording stand-in over real HTTP, answering as Matomo 5.0.2 was measured to: a
request for a site the token may not write is invalid, the rest of its batch is tracked, and
only a super user is told which requests were invalid.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from audimeter.matomo.sink import Backoff, MatomoSink
from audimeter.store import Store
from tests.support.matomo import DEFAULT_TOKEN, RecordingMatomo

QUICK = Backoff(initial=0.01, maximum=0.02)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "state.db")
    yield store
    store.close()


def queue(store: Store, sites: list[int], first: int = 0) -> None:
    """One request per entry of `sites`, numbered from `first` (its `cid`), with a `cip`."""
    store.queue_requests(
        [
            f"?idsite={site}&rec=1&cid={first + n:016x}&cip=198.51.100.{first + n}"
            f"&url=http%3A%2F%2Fr%2Fm&action_name=m&cdt={1_700_000_000 + first + n}"
            for n, site in enumerate(sites)
        ],
    )


def make_sink(store: Store, client: httpx.AsyncClient, matomo: RecordingMatomo) -> MatomoSink:
    return MatomoSink(
        store,
        client,
        tracking_url=matomo.tracking_url,
        token_auth=DEFAULT_TOKEN,
        batch_size=10,
        api_url=matomo.url + "index.php",
        backoff=QUICK,
        refused_retry=QUICK,
    )


def deliver(store: Store, matomo: RecordingMatomo, rounds: int = 50) -> MatomoSink:
    async def go() -> MatomoSink:
        async with httpx.AsyncClient(timeout=5) as client:
            sink = make_sink(store, client, matomo)
            for _ in range(rounds):
                if not await sink.flush_once():
                    break
            return sink

    return asyncio.run(go())


def tracked(matomo: RecordingMatomo, site: int) -> list[int]:
    return [int(r.params["cid"], 16) for r in matomo.requests if r.params["idsite"] == str(site)]


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refuses the token" in r.getMessage()]


def test_a_refused_site_is_parked_while_the_others_flow(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sites = [1, 2] * 15  # every batch mixes the two sites
    queue(store, sites)
    with RecordingMatomo(site_ids={1, 2}) as matomo:
        matomo.refuse_sites(2)
        sink = deliver(store, matomo)
        assert tracked(matomo, 1) == [n for n, site in enumerate(sites) if site == 1]
        assert tracked(matomo, 2) == []
        assert store.dead_letters() == []
        assert store.parked_sites() == {2: 15}
        assert sink.stats.parked == 15
        # One line for the site, not one per batch (three batches held site 2's requests).
        assert refusals(caplog) == [
            "matomo site 2 refuses the token (no write access or deleted): 5 request(s) kept; "
            "they will be sent once access is back"
        ]
        # Requests for the site queued meanwhile are parked without being sent.
        batches = len(matomo.batches)
        queue(store, [2, 1, 2], first=30)
        deliver(store, matomo)
        assert [len(b.requests) for b in matomo.batches[batches:]] == [1]
        assert tracked(matomo, 1)[-1] == 31
        assert store.parked_sites() == {2: 17}
        # The new sink (a restart) logs the refusal again once it has asked.
        assert len(refusals(caplog)) == 2

        matomo.allow_sites(2)
        deliver(store, matomo)
    parked_order = [n for n, site in enumerate(sites) if site == 2] + [30, 32]
    assert tracked(matomo, 2) == parked_order
    assert store.matomo_pending() == 0
    assert any("site 2 takes the token again: 17" in r.getMessage() for r in caplog.records)
    assert DEFAULT_TOKEN not in caplog.text


def test_super_user_refusals_are_sorted_by_site(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Matomo names the invalid requests: a deleted site's are parked, a bad request is a dead
    letter, and the rest is delivered once."""
    queue(store, [1, 3, 1, 3, 1])
    with RecordingMatomo(site_ids={1, 3}, superuser=True) as matomo:
        matomo.refuse_sites(3)
        matomo.mark_invalid(lambda p: p["cid"] == f"{2:016x}")
        sink = deliver(store, matomo)
    assert tracked(matomo, 1) == [0, 4]
    (dead,) = store.dead_letters()
    assert f"cid={2:016x}" in (dead.row.payload or "")
    assert store.parked_sites() == {3: 2}
    assert (sink.stats.sent, sink.stats.dead_lettered, sink.stats.parked) == (2, 1, 2)
    assert len(refusals(caplog)) == 1


def test_a_batch_of_only_the_refused_site_does_not_hold_the_outbox(store: Store) -> None:
    queue(store, [2] * 10)
    queue(store, [1] * 3, first=10)
    with RecordingMatomo(site_ids={1, 2}) as matomo:
        matomo.refuse_sites(2)
        sink = deliver(store, matomo)
    assert tracked(matomo, 1) == [10, 11, 12]
    assert sink.stats.failures == 0
    assert store.parked_sites() == {2: 10}


def test_requests_bad_in_themselves_are_told_from_a_refused_site(store: Store) -> None:
    """Matomo refuses the whole batch without naming the invalid requests: those of the site the
    token may not write are parked, the others are bad in themselves and become dead letters."""
    queue(store, [1, 2, 1, 2])
    with RecordingMatomo(site_ids={1, 2}) as matomo:
        matomo.refuse_sites(2)
        matomo.mark_invalid(lambda p: p["idsite"] == "1")
        sink = deliver(store, matomo)
    assert matomo.requests == []
    assert [((d.row.payload or "") or "").split("cid=")[1][:16] for d in store.dead_letters()] == [
        f"{n:016x}" for n in (0, 2)
    ]
    assert all(d.reason == "Matomo counted the request as invalid" for d in store.dead_letters())
    assert store.parked_sites() == {2: 2}
    assert sink.stats.failures == 0


def test_a_token_the_api_refuses_holds_the_batch(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Every request invalid and no site to blame: the token is wrong for all, so the batch
    stays and is retried, and nothing is parked or dead-lettered."""
    queue(store, [1] * 3)
    with RecordingMatomo(site_ids={1}, token_auth="another-token-0000000000000000000") as matomo:
        sink = deliver(store, matomo, rounds=3)
    assert sink.stats.failures == 3
    assert store.matomo_pending() == 3
    assert store.parked_sites() == {}
    assert store.dead_letters() == []
    assert "cannot say which sites token_auth may track to" in caplog.text
    assert DEFAULT_TOKEN not in caplog.text


def test_the_running_sink_sends_parked_requests_once_access_is_back(store: Store) -> None:
    queue(store, [1, 2, 1, 2])

    async def go(matomo: RecordingMatomo) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            sink = make_sink(store, client, matomo)
            task = asyncio.create_task(sink.run())
            try:
                await until(lambda: store.parked_sites() == {2: 2})
                await asyncio.sleep(0.2)  # several checks find the site still refused
                assert tracked(matomo, 2) == []
                matomo.allow_sites(2)
                await until(lambda: store.matomo_pending() == 0)
            finally:
                task.cancel()

    with RecordingMatomo(site_ids={1, 2}) as matomo:
        matomo.refuse_sites(2)
        asyncio.run(go(matomo))
    assert tracked(matomo, 1) == [0, 2]
    assert tracked(matomo, 2) == [1, 3]


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 (a condition of the store and the stand-in)
            await asyncio.sleep(0.01)
