"""The Matomo sink: drains the outbox to Matomo's bulk tracking API.

One batch is in flight at a time and batches leave in outbox order, so one visitor's requests reach
Matomo in time order. That holds across processes too: a sink holds the state file's `SendLock`
from reading a batch until it is deleted, so `audimeter run` and `audimeter import` on one state
file take turns and never send the same request. A batch is deleted from the outbox only after
Matomo answered for it:

* 200 with no invalid request: acknowledged.
* 200 with some invalid requests: those (from `invalid_indices`, or the whole batch when Matomo
  does not say which) go to the dead-letter table with Matomo's answer; the rest is acknowledged.
* 200 with every request invalid, 401 or 403: the token or site is wrong for all of them, so the
  batch stays and is retried, with an error in the log, until the configuration is fixed.
* another 4xx: Matomo rolled the batch back; it is split to find the requests it refuses, and a
  single refused request goes to the dead-letter table.
* 5xx, timeouts and network errors: the same batch is retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from audimeter.config import MatomoConfig
from audimeter.store import OutboxRow, Store

log = logging.getLogger(__name__)

LOCK_PATIENCE = 1.0
"""Seconds `flush_once` waits for another process's batch before it lets its caller look again."""
_LOCK_POLL = 0.05
OUTBOX_RECHECK = 5.0
"""Seconds an idle sink waits before it looks at the outbox again: another process (an import
that could not deliver everything) may have left requests in it."""


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0

    def delay(self, failures: int) -> float:
        base = min(self.maximum, self.initial * 2.0 ** max(failures - 1, 0))
        return float(base * random.uniform(0.8, 1.0))


class _Retry(Exception):
    """The batch could not be delivered now; try it again later."""


@dataclass(slots=True)
class SinkStats:
    sent: int = 0
    dead_lettered: int = 0
    failures: int = 0


class MatomoSink:
    def __init__(
        self,
        store: Store,
        client: httpx.AsyncClient,
        *,
        tracking_url: str,
        token_auth: str,
        batch_size: int,
        backoff: Backoff | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._url = tracking_url
        self._token = token_auth
        self._batch_size = batch_size
        self._backoff = backoff or Backoff()
        self._wakeup = asyncio.Event()
        self.stats = SinkStats()
        self._failures = 0

    @classmethod
    def from_config(
        cls,
        store: Store,
        client: httpx.AsyncClient,
        matomo: MatomoConfig,
        backoff: Backoff | None = None,
    ) -> MatomoSink:
        return cls(
            store,
            client,
            tracking_url=matomo.tracking_url,
            token_auth=matomo.token_auth.get_secret_value(),
            batch_size=matomo.batch_size,
            backoff=backoff,
        )

    def notify(self) -> None:
        """New rows are in the outbox."""
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver forever; cancel to stop (a batch in flight then stays in the outbox)."""
        while True:
            if not await self.flush_once():
                self._wakeup.clear()
                if self._store.outbox_size() == 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(OUTBOX_RECHECK):
                            await self._wakeup.wait()

    async def flush_once(self, upto: int | None = None) -> bool:
        """Send one batch (of requests with ids up to `upto`, when given); False when there was
        none. Sleeps the backoff after a failure. True without sending when another process
        kept the send lock for `LOCK_PATIENCE` seconds: it is sending from the same outbox."""
        lock = self._store.send_lock
        deadline = asyncio.get_running_loop().time() + LOCK_PATIENCE
        while not lock.try_acquire():
            if asyncio.get_running_loop().time() >= deadline:
                return True
            await asyncio.sleep(_LOCK_POLL)
        try:
            rows = self._store.outbox_batch(self._batch_size, upto)
            if not rows:
                return False
            failed: _Retry | None = None
            try:
                await self._deliver(rows)
            except _Retry as exc:
                failed = exc
        finally:
            lock.release()
        if failed is not None:
            self._failures += 1
            self.stats.failures += 1
            delay = self._backoff.delay(self._failures)
            log.warning(
                "matomo: %s; %d requests kept, retrying in %.0f s", failed, len(rows), delay
            )
            await asyncio.sleep(delay)
            return True
        if self._failures:
            log.info("matomo: delivering again after %d failed attempts", self._failures)
        self._failures = 0
        return True

    async def drain(self, seconds: float) -> None:
        """Deliver what is in the outbox, giving up quietly after `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while await self.flush_once():
                    pass
        except TimeoutError:
            log.info(
                "matomo: %d requests left in the outbox for next time", self._store.outbox_size()
            )

    async def _deliver(self, rows: Sequence[OutboxRow]) -> None:
        status, answer = await self._post(rows)
        if status == 200 and answer.get("status") == "success":
            invalid = _int(answer.get("invalid"))
            if invalid == 0:
                self._store.acknowledge([row.id for row in rows])
                self.stats.sent += len(rows)
                return
            if invalid >= len(rows):
                raise _Retry(
                    f"Matomo refused all {len(rows)} requests of a batch; check that token_auth "
                    "has write access to the site and that site_id exists"
                )
            self._dead_letter_some(rows, invalid, answer)
            return
        if status in (401, 403):
            raise _Retry(f"Matomo refused token_auth (HTTP {status}); check token_auth")
        if 400 <= status < 500:
            if len(rows) == 1:
                reason = f"HTTP {status}: {_reason(answer)}"
                self._store.dead_letter(rows, reason)
                self.stats.dead_lettered += 1
                log.error(
                    "matomo: request %d refused (%s); moved to the dead-letter table",
                    rows[0].id,
                    reason,
                )
                return
            half = len(rows) // 2
            await self._deliver(rows[:half])
            await self._deliver(rows[half:])
            return
        raise _Retry(f"Matomo answered HTTP {status} ({_reason(answer)})")

    def _dead_letter_some(
        self, rows: Sequence[OutboxRow], invalid: int, answer: dict[str, object]
    ) -> None:
        indices = answer.get("invalid_indices")
        if isinstance(indices, list) and all(isinstance(i, int) for i in indices):
            refused = [rows[i] for i in indices if 0 <= i < len(rows)]
            reason = "Matomo counted the request as invalid"
        else:
            refused = list(rows)
            reason = (
                f"Matomo counted {invalid} of the {len(rows)} requests of this batch as invalid "
                "without saying which (a super-user token makes it say)"
            )
        refused_ids = {row.id for row in refused}
        self._store.dead_letter(refused, reason)
        accepted = [row.id for row in rows if row.id not in refused_ids]
        self._store.acknowledge(accepted)
        self.stats.sent += len(accepted)
        self.stats.dead_lettered += len(refused)
        log.error(
            "matomo: %d of %d requests invalid; moved to the dead-letter table",
            len(refused),
            len(rows),
        )

    async def _post(self, rows: Sequence[OutboxRow]) -> tuple[int, dict[str, object]]:
        # The token goes in the body only, never in a URL that could end up in a log.
        body = json.dumps(
            {"requests": [row.payload for row in rows], "token_auth": self._token},
            separators=(",", ":"),
        )
        try:
            response = await self._client.post(
                self._url, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException:
            raise _Retry("no answer from Matomo within the timeout") from None
        except httpx.HTTPError as exc:
            raise _Retry(f"cannot reach Matomo at {self._url} ({type(exc).__name__})") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if response.status_code == 200 and not answer:
            raise _Retry(
                f"Matomo answered 200 without the bulk tracking JSON; is {self._url} Matomo?"
            )
        return response.status_code, answer


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _reason(answer: dict[str, object]) -> str:
    message = answer.get("message")
    return str(message) if message else "no reason given"
