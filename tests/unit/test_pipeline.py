"""The pipeline step: sessionizer, store and journal together; the cursor rules and limits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from audimeter.config import parse_config
from audimeter.events import Session, SessionEnded, SessionKeptAlive, SessionStarted
from audimeter.journal import Stamper
from audimeter.observations import Listener, ListenerList, MountPolled, SourceSeen
from audimeter.outputs.base import KeepaliveLimits
from audimeter.runner import Pipeline
from audimeter.sessionizer import Sessionizer
from audimeter.store import Stamped, Store

S = Session("main", "i0", "/old", "0", "10.9.9.9", "VLC", "", 1, 0)


def poll(at: int, *listeners: Listener) -> MountPolled:
    return MountPolled("main", at, "i1", "/live", ListenerList(listeners))


@dataclass
class Lagging:
    """An output that takes nothing unless told (`store.advance`): its backlog is the journal
    past its cursor."""

    store: Store
    name: str
    limit: int | None

    def backlog(self) -> int:
        return self.store.last_seq() - self.store.cursor(self.name)


def make(
    tmp_path: Path, *limits: int | None, clock: Callable[[], float] = lambda: 0.0
) -> tuple[Pipeline, Store, KeepaliveLimits]:
    store = Store.open(tmp_path / "state.db")
    sessionizer = Sessionizer(keepalive_interval=120, outage_grace=60)
    outputs = [Lagging(store, f"out{n}", limit) for n, limit in enumerate(limits)]
    store.prepare_cursors([o.name for o in outputs], drop_others=True)
    guard = KeepaliveLimits(store, outputs, clock)  # type: ignore[arg-type]
    stamp = Stamper(CONFIG, "salt")
    return Pipeline(store, sessionizer, stamp, limits=guard), store, guard


CONFIG = parse_config(
    {"sources": [{"name": "main", "kind": "icecast", "url": "http://r:8000", "password": "p"}]}
)


def kinds(store: Store, after: int = 0) -> list[str]:
    kind = {SessionStarted: "start", SessionKeptAlive: "alive", SessionEnded: "end"}
    return [kind[type(row.event)] for row in store.journal_batch(after, 10_000)]


def test_events_are_journaled(tmp_path: Path) -> None:
    pipeline, store, _ = make(tmp_path, None)
    pipeline.feed([poll(1000, Listener("1", "10.0.0.1", "VLC", 250))])
    pipeline.feed([poll(1010)])
    assert kinds(store) == ["start", "alive", "alive", "end"]
    assert store.load_sessions() == []


def test_outputs_all_over_their_limit_keep_starts_and_ends_but_not_keepalives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, store, guard = make(tmp_path, 3, 1000)
    store.commit([], [], [Stamped(SessionStarted(S), "v")] * 3)  # out0: 3 behind, at its limit
    with caplog.at_level(logging.WARNING):
        pipeline.feed([poll(1000, Listener("1", "10.0.0.1", "VLC", 250))])
    # out1 is within its limit: the keep-alives are journaled for it
    assert kinds(store, 3) == ["start", "alive", "alive"]
    store.advance("out1", store.last_seq())
    guard.prune()  # only out0, over its limit, has not passed them: they go
    assert kinds(store, 3) == ["start"]
    assert guard.dropped == {"out0": 2, "out1": 0}
    store.close()


@pytest.mark.parametrize(
    ("taken", "expected", "dropped"),
    [
        # (what each output has taken) -> (kinds journaled, keep-alives dropped per output)
        ((0, 0), ["start", "end", "start"], {"out0": 2, "out1": 2}),  # both down: none kept
        ((3, 0), ["start", "alive", "alive", "end", "start"], {"out0": 0, "out1": 0}),
        ((3, 3), ["start", "alive", "alive", "end", "start"], {"out0": 0, "out1": 0}),
    ],
)
def test_the_limit_is_per_output(
    tmp_path: Path, taken: tuple[int, int], expected: list[str], dropped: dict[str, int]
) -> None:
    """Matomo down for an hour (out0 takes nothing), JSON lines slow (out1): keep-alives are
    dropped only while every output is over its limit."""
    hours = iter(range(0, 10**6, 3600))
    pipeline, store, guard = make(tmp_path, 3, 3, clock=lambda: float(next(hours)))
    store.commit([], [], [Stamped(SessionStarted(S), "v")] * 3)
    for name, seq in zip(("out0", "out1"), taken, strict=True):
        store.advance(name, seq)
    pipeline.feed([poll(1000, Listener("1", "10.0.0.1", "VLC", 250))])
    pipeline.feed([poll(1010, Listener("2", "10.0.0.2", "VLC", 250))])
    assert kinds(store, 3) == expected
    assert guard.dropped == dropped
    store.close()


def test_the_journal_is_pruned_up_to_the_slowest_output(tmp_path: Path) -> None:
    _, store, _ = make(tmp_path, None, None)
    store.commit([], [], [Stamped(SessionStarted(S), "v")] * 5)
    store.advance("out0", 5)
    store.advance("out1", 2)
    assert store.prune_journal() == 2
    assert [row.seq for row in store.journal_batch(0, 10)] == [3, 4, 5]
    assert store.prepare_cursors(["out0"], drop_others=True) == ["out1"]  # out1 unconfigured
    assert store.prune_journal() == 3
    assert store.last_seq() == 5  # seqs are never reused
    store.close()


def test_server_instances_are_stored_when_they_change(tmp_path: Path) -> None:
    pipeline, store, _ = make(tmp_path, None)
    pipeline.feed([SourceSeen("main", 1000, "i1", frozenset())])
    assert store.load_instances() == {"main": "i1"}
    pipeline.feed([SourceSeen("main", 1010, "i2", frozenset())])
    assert store.load_instances() == {"main": "i2"}
