"""The webhook inbox file: durable appends, and each notice taken once across it and the state
file (the position committed with the outcome, the file told apart by its token)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from audimeter.events import Event
from audimeter.inbox import Inbox, inbox_path
from audimeter.observations import ListenerLeft, LogPosition, Observation
from audimeter.runner import Pipeline, drain_inbox
from audimeter.sessionizer import Sessionizer
from audimeter.store import Stamped, Store
from audimeter.webhook import encode


def notice(client_id: str) -> str:
    return encode(ListenerLeft("main", 1000, "/live.mp3", 5, client_id=client_id))


class Recorder(Pipeline):
    """A pipeline that only notes the notices it is fed and commits where they came from."""

    def __init__(self, store: Store, taken: list[str]) -> None:
        super().__init__(store, Sessionizer(keepalive_interval=120, outage_grace=120), _stamp)
        self.taken = taken

    def feed(
        self,
        observations: Sequence[Observation],
        *,
        consumed_inbox: Sequence[int] = (),
        inbox_position: tuple[str, int] | None = None,
        log_positions: Sequence[LogPosition] = (),
    ) -> list[Event]:
        self.taken += [o.client_id for o in observations if isinstance(o, ListenerLeft)]
        self._store.commit([], [], [], inbox_position=inbox_position)
        return []


def _stamp(event: Event) -> Stamped:
    raise AssertionError("no event expected")


def test_appends_wait_for_the_disk(tmp_path: Path) -> None:
    inbox = Inbox.open(inbox_path(tmp_path / "state.db"))
    assert inbox.path == tmp_path / "state.db.inbox"
    assert inbox._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    inbox.close()


def test_each_notice_is_taken_once_and_pruned_after(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    inbox = Inbox.open(inbox_path(store.path))
    taken: list[str] = []
    for client_id in ("1", "2"):
        inbox.append(notice(client_id))
    drain_inbox(store, inbox, Recorder(store, taken))
    assert taken == ["1", "2"]
    assert inbox.after(0, 10) == []  # pruned once the position was committed
    inbox.append(notice("3"))
    # A crash after the outcome's commit but before the prune: the position says where to go on.
    store.commit([], [], [], inbox_position=(inbox.token, 3))
    inbox.append(notice("4"))
    drain_inbox(store, inbox, Recorder(store, taken))
    assert taken == ["1", "2", "4"]
    store.close()
    inbox.close()


def test_another_inbox_file_is_read_from_its_start(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    inbox = Inbox.open(inbox_path(store.path))
    inbox.append(notice("1"))
    taken: list[str] = []
    drain_inbox(store, inbox, Recorder(store, taken))
    inbox.close()
    inbox_path(store.path).unlink()
    for suffix in ("-wal", "-shm"):
        inbox_path(store.path).with_name(store.path.name + ".inbox" + suffix).unlink(
            missing_ok=True
        )
    replaced = Inbox.open(inbox_path(store.path))
    replaced.append(notice("7"))  # id 1 again, in a file with another token
    drain_inbox(store, replaced, Recorder(store, taken))
    assert taken == ["1", "7"]
    store.close()
    replaced.close()
