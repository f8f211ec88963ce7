"""What every output of the journal shares.

An output reads the journal (`Store.journal_batch`) after its cursor, in seq order, hands a
batch to its destination and moves its cursor past it only once the destination accepted it:
at-least-once, in order, independently of the other outputs. Each runs as its own task, woken
by the pipeline, so a slow or unreachable destination delays nothing else. A per-output lock
file beside the state file (`Store.output_lock`) makes `audimeter run` and `audimeter import`
take turns, so no process sends what another already sent.

An output that falls `limit` events behind skips keep-alives (`KeepaliveLimits`): starts and
ends are never skipped, so every session keeps its true start and end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from audimeter.events import Event, SessionKeptAlive
from audimeter.store import SendLock, Store

log = logging.getLogger(__name__)

_LOCK_POLL = 0.05


class Output(Protocol):
    name: str
    """Its cursor's name: `matomo`, `jsonl` or `stdout`."""
    limit: int | None
    """The backlog (events) from which keep-alives are skipped for it; None for no limit."""

    def notify(self) -> None:
        """New events are in the journal."""

    def backlog(self) -> int:
        """An upper bound of the events it has not taken yet."""

    async def run(self) -> None:
        """Deliver until cancelled."""

    async def flush_once(self, upto: int | None = None) -> bool:
        """Deliver one batch (up to seq `upto`); False when there was nothing to deliver."""

    async def drain(self, seconds: float) -> None:
        """Deliver what is journaled, giving up after `seconds`."""


async def acquire(lock: SendLock, patience: float) -> bool:
    """Take `lock`, waiting up to `patience` seconds while another process holds it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while not lock.try_acquire():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_LOCK_POLL)
    return True


class KeepaliveLimits:
    """Keeps the journal bounded while outputs lag: an output `limit` events behind skips
    keep-alives until it catches up.

    When every output with a limit is over it, keep-alives are not journaled at all; when only
    some are, they are journaled for the others and deleted (`prune`) once only outputs over
    their limit have not passed them. Each output counts what it skipped, with a warning at
    most once an hour.
    """

    def __init__(
        self,
        store: Store,
        outputs: Sequence[Output],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._outputs = list(outputs)
        self._clock = clock
        self.dropped: dict[str, int] = {o.name: 0 for o in outputs}
        self._warned_at: dict[str, float] = {}
        self._pruned_upto = 0

    def _over(self) -> list[Output]:
        return [o for o in self._outputs if o.limit is not None and o.backlog() >= o.limit]

    def admit(self, events: Sequence[Event]) -> Sequence[Event]:
        """The events to journal: without keep-alives when every output is over its limit."""
        if not self._outputs or not any(isinstance(e, SessionKeptAlive) for e in events):
            return events
        over = self._over()
        if len(over) < len(self._outputs):
            return events
        kept = [e for e in events if not isinstance(e, SessionKeptAlive)]
        self._skipped(over, len(events) - len(kept))
        return kept

    def prune(self) -> None:
        """Delete the keep-alives that only outputs over their limit have not passed."""
        over = self._over()
        if not over or len(over) == len(self._outputs):
            return
        cursors = self._store.cursors()
        behind = min(cursors.get(o.name, 0) for o in over)
        passed = min(cursors.get(o.name, 0) for o in self._outputs if o not in over)
        after = max(behind, self._pruned_upto)
        if passed > after:
            self._skipped(over, self._store.prune_keepalives(after, passed))
            self._pruned_upto = passed

    def _skipped(self, outputs: Sequence[Output], count: int) -> None:
        if not count:
            return
        now = self._clock()
        for output in outputs:
            self.dropped[output.name] += count
            warned = self._warned_at.get(output.name)
            if warned is None or now - warned >= 3600:
                self._warned_at[output.name] = now
                log.warning(
                    "%s: %d events behind (outbox_limit = %d): keep-alives are skipped for it "
                    "until it catches up (%d so far); starts and ends still are kept",
                    output.name,
                    output.backlog(),
                    output.limit,
                    self.dropped[output.name],
                )
