"""The Matomo sink against a recording Matomo over real HTTP: acknowledgements and failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from audimeter.matomo import sink as sink_module
from audimeter.matomo.sink import Backoff, MatomoSink
from audimeter.store import Store
from tests.support.audimeter import wait_for
from tests.support.matomo import DEFAULT_TOKEN, RecordingMatomo


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "state.db")
    yield store
    store.close()


def fill(store: Store, count: int, site: int = 1) -> list[str]:
    payloads = [
        f"?idsite={site}&rec=1&cid={n:016x}&url=http%3A%2F%2Fr%2Fm&action_name=m"
        f"&cdt={1_700_000_000 + n}"
        for n in range(count)
    ]
    store.queue_requests(payloads)
    return payloads


def flush(
    store: Store,
    matomo: RecordingMatomo,
    *,
    token: str = DEFAULT_TOKEN,
    rounds: int = 50,
    batch_size: int = 10,
    timeout: float = 5.0,
) -> MatomoSink:
    async def go() -> MatomoSink:
        async with httpx.AsyncClient(timeout=timeout) as client:
            sink = MatomoSink(
                store,
                client,
                tracking_url=matomo.tracking_url,
                token_auth=token,
                batch_size=batch_size,
                backoff=Backoff(initial=0.01, maximum=0.05),
            )
            for _ in range(rounds):
                if not await sink.flush_once():
                    break
            return sink

    return asyncio.run(go())


def tracked_cids(matomo: RecordingMatomo) -> list[str]:
    return [r.params["cid"] for r in matomo.requests]


def test_everything_delivered_once_in_order(store: Store) -> None:
    payloads = fill(store, 35)
    with RecordingMatomo() as matomo:
        sink = flush(store, matomo)
    assert tracked_cids(matomo) == [f"{n:016x}" for n in range(35)]
    assert [len(b.requests) for b in matomo.batches] == [10, 10, 10, 5]
    assert store.matomo_pending() == 0
    assert sink.stats.sent == len(payloads)


def test_server_errors_are_retried_in_order(store: Store) -> None:
    fill(store, 20)
    with RecordingMatomo() as matomo:
        matomo.fail_with(503, count=3)
        sink = flush(store, matomo)
    assert tracked_cids(matomo) == [f"{n:016x}" for n in range(20)]
    assert matomo.failed_posts == 3
    assert sink.stats.failures == 3


def test_unreachable_matomo_keeps_everything(store: Store) -> None:
    fill(store, 5)
    with RecordingMatomo() as matomo:
        url = matomo.tracking_url  # nothing listens there once it stopped

    async def go() -> None:
        async with httpx.AsyncClient(timeout=1) as client:
            sink = MatomoSink(
                store,
                client,
                tracking_url=url,
                token_auth=DEFAULT_TOKEN,
                batch_size=10,
                backoff=Backoff(initial=0.01, maximum=0.01),
            )
            assert await sink.flush_once()
            assert sink.stats.failures == 1

    asyncio.run(go())
    assert store.matomo_pending() == 5


def test_invalid_requests_named_by_matomo_go_to_dead_letters(store: Store) -> None:
    fill(store, 10)
    with RecordingMatomo(superuser=True) as matomo:
        matomo.mark_invalid(lambda p: p["cid"] in {f"{3:016x}", f"{7:016x}"})
        sink = flush(store, matomo)
    assert tracked_cids(matomo) == [f"{n:016x}" for n in range(10) if n not in (3, 7)]
    dead = store.dead_letters()
    assert [(d.row.payload or "").split("cid=")[1][:16] for d in dead] == [f"{3:016x}", f"{7:016x}"]
    assert all(d.reason == "Matomo counted the request as invalid" for d in dead)
    assert store.matomo_pending() == 0
    assert (sink.stats.sent, sink.stats.dead_lettered) == (8, 2)


def test_invalid_requests_matomo_does_not_name_keep_the_batch_for_inspection(store: Store) -> None:
    fill(store, 4)
    with RecordingMatomo(superuser=False) as matomo:
        matomo.mark_invalid(lambda p: p["cid"] == f"{1:016x}")
        flush(store, matomo)
    dead = store.dead_letters()
    assert len(dead) == 4
    assert "1 of the 4 requests" in dead[0].reason
    assert store.matomo_pending() == 0


def test_a_refused_token_holds_the_outbox(store: Store) -> None:
    fill(store, 5)
    with RecordingMatomo() as matomo:
        sink = flush(store, matomo, token="wrong-token", rounds=3)
    assert matomo.requests == []
    assert store.matomo_pending() == 5
    assert store.dead_letters() == []
    assert sink.stats.failures == 3


def test_a_rejected_batch_is_split_to_find_the_refused_request(store: Store) -> None:
    fill(store, 4)
    with RecordingMatomo() as matomo:
        matomo.fail_with(400, count=3)  # the batch of 4, its first half, then its first request
        flush(store, matomo)
    assert tracked_cids(matomo) == [f"{n:016x}" for n in (1, 2, 3)]
    (dead,) = store.dead_letters()
    assert f"cid={0:016x}" in (dead.row.payload or "")
    assert dead.reason.startswith("HTTP 400")


def test_a_timed_out_batch_is_sent_again(store: Store) -> None:
    fill(store, 3)
    with RecordingMatomo() as matomo:
        matomo.delay(1.0)
        flush(store, matomo, rounds=1, timeout=0.3)
        matomo.recover()
        flush(store, matomo)
    # Matomo tracked the first attempt before answering too late: at-least-once delivery.
    assert tracked_cids(matomo) == [f"{n:016x}" for n in range(3)] * 2
    assert store.matomo_pending() == 0


def test_an_idle_sink_finds_what_another_process_queued(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests an import left in the outbox (Matomo was down for it) are delivered by the
    running daemon's sink, which nothing of its own wakes."""
    monkeypatch.setattr(sink_module, "OUTBOX_RECHECK", 0.2)
    other = Store.open(tmp_path / "state.db")

    async def go(matomo: RecordingMatomo) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            sink = MatomoSink(
                store,
                client,
                tracking_url=matomo.tracking_url,
                token_auth=DEFAULT_TOKEN,
                batch_size=10,
            )
            running = asyncio.create_task(sink.run())
            await asyncio.sleep(0.3)  # idle, waiting
            payloads = fill(other, 3)
            await asyncio.to_thread(
                wait_for, lambda: len(matomo.requests) == len(payloads), 5, "the delivery"
            )
            running.cancel()

    try:
        with RecordingMatomo() as matomo:
            asyncio.run(go(matomo))
    finally:
        other.close()
    assert tracked_cids(matomo) == [f"{n:016x}" for n in range(3)]


def test_a_sink_waits_while_another_process_sends(store: Store, tmp_path: Path) -> None:
    fill(store, 5)
    other = Store.open(tmp_path / "state.db")
    assert other.send_lock.try_acquire()  # `audimeter import` has a batch in flight
    try:
        with RecordingMatomo() as matomo:
            sink = flush(store, matomo, rounds=1)
            assert matomo.batches == []
            other.send_lock.release()
            flush(store, matomo)
    finally:
        other.close()
    assert sink.stats.sent == 0
    assert tracked_cids(matomo) == [f"{n:016x}" for n in range(5)]
