"""The pipeline step: sessionizer, store and outbox together, and the outbox bound."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from audimeter.matomo.mapping import RequestMapper, SiteMapping
from audimeter.observations import Listener, ListenerList, MountPolled, SourceSeen
from audimeter.runner import Pipeline
from audimeter.sessionizer import Sessionizer
from audimeter.store import Store


def poll(at: int, *listeners: Listener) -> MountPolled:
    return MountPolled("main", at, "i1", "/live", ListenerList(listeners))


def make(tmp_path: Path, limit: int | None) -> tuple[Pipeline, Store]:
    store = Store.open(tmp_path / "state.db")
    sessionizer = Sessionizer(keepalive_interval=120, outage_grace=60)
    mapper = RequestMapper("salt", {"main": SiteMapping(1, "http://r")}, 1)
    return Pipeline(store, sessionizer, mapper, outbox_limit=limit, clock=lambda: 0.0), store


def kinds(store: Store) -> list[str]:
    payloads = [row.payload for row in store.outbox_batch(10_000)]
    return ["end" if "e_a=end" in p else "alive" if "e_a=keep" in p else "start" for p in payloads]


def test_events_are_committed_with_their_requests(tmp_path: Path) -> None:
    pipeline, store = make(tmp_path, None)
    pipeline.feed([poll(1000, Listener("1", "10.0.0.1", "VLC", 250))])
    pipeline.feed([poll(1010)])
    assert kinds(store) == ["start", "alive", "alive", "end"]
    assert store.load_sessions() == []


def test_a_full_outbox_keeps_starts_and_ends_but_not_keepalives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, store = make(tmp_path, 3)
    store.commit([], [], ["?old=1", "?old=2", "?old=3"])
    with caplog.at_level(logging.WARNING):
        pipeline.feed([poll(1000, Listener("1", "10.0.0.1", "VLC", 250))])
        pipeline.feed([poll(1010, Listener("2", "10.0.0.2", "VLC", 250))])
    assert kinds(store)[3:] == ["start", "end", "start"]
    assert pipeline.dropped_keepalives == 2
    warnings = [r.getMessage() for r in caplog.records if "outbox is full" in r.getMessage()]
    assert len(warnings) == 1  # once an hour, not once a poll
    store.acknowledge([row.id for row in store.outbox_batch(100)])  # Matomo took them all
    pipeline.feed([poll(1250, Listener("2", "10.0.0.2", "VLC", 500))])
    assert kinds(store)[-1] == "alive"  # room again: keep-alives are queued again


def test_server_instances_are_stored_when_they_change(tmp_path: Path) -> None:
    pipeline, store = make(tmp_path, None)
    pipeline.feed([SourceSeen("main", 1000, "i1", frozenset())])
    assert store.load_instances() == {"main": "i1"}
    pipeline.feed([SourceSeen("main", 1010, "i2", frozenset())])
    assert store.load_instances() == {"main": "i2"}
