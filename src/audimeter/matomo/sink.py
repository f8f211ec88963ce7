"""The Matomo output: sends the journal's events to Matomo's bulk tracking API.

Each event is mapped to its tracking request when it is sent, with the configuration of the
process that sends it (`RequestMapper`), and with the visitor id it was journaled with. One batch
is in flight at a time and batches leave in journal order, so one visitor's requests reach
Matomo in time order. That holds across processes too: a sink holds the state file's `SendLock`
from reading a batch until its cursor (`matomo`) has moved past it, so `audimeter run` and
`audimeter import` on one state file take turns and never send the same request. The cursor
moves only after Matomo answered for the batch:

* 200 with no invalid request: acknowledged.
* 200 with invalid requests: Matomo tracked the others (measured on Matomo 5.0.2) and names the
  invalid ones (`invalid_indices`) only to a super user. The sink asks the Reporting API which
  sites the token may track to (`audimeter.matomo.access`). Requests for a site it may not (access
  removed, site deleted) are *parked*: kept in the state file, with every later request for that
  site, while the other sites' requests keep flowing; the access is asked again on a backoff up
  to once a minute, and once the site takes the token again its parked events are sent, in
  their order, before any later event of the journal. Invalid requests for a site the token may
  write are bad in themselves and go to the dead-letter table (the event with Matomo's
  reason); when Matomo did not name them in a batch it tracked in part, the rest of that batch
  goes there, marked as such. When the API cannot tell (unreachable, token refused), a batch
  refused whole is retried with backoff, and the invalid requests of one tracked in part go to
  the dead-letter table.
* 401 or 403: the token is wrong for all of them, so the batch stays and is retried, with an
  error in the log, until the configuration is fixed.
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

import httpx

from audimeter.config import MatomoConfig
from audimeter.matomo.access import SiteAccess
from audimeter.matomo.api import MatomoApi, MatomoApiError
from audimeter.matomo.mapping import RequestMapper
from audimeter.outputs.base import acquire
from audimeter.store import MATOMO, JournalRow, Store

log = logging.getLogger(__name__)

LOCK_PATIENCE = 1.0
"""Seconds `flush_once` waits for another process's batch before it lets its caller look again."""
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


REFUSED_SITE_RETRY = Backoff(initial=5.0, maximum=60.0)
"""How often the access to a refused site is asked again: soon after a refusal (an access
removed by mistake and given back), then once a minute."""


@dataclass(slots=True)
class SinkStats:
    sent: int = 0
    dead_lettered: int = 0
    parked: int = 0
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
        api_url: str | None = None,
        backoff: Backoff | None = None,
        refused_retry: Backoff = REFUSED_SITE_RETRY,
        clock: Callable[[], float] = time.monotonic,
        mapper: RequestMapper | None = None,
        limit: int | None = None,
    ) -> None:
        """Without `api_url`, refusals cannot be told apart: nothing is parked. `mapper` maps
        the events (a journal of ready-made requests only needs none); `limit`: the backlog
        at which keep-alives are skipped for Matomo (`matomo.outbox_limit`)."""
        self.name = MATOMO
        self.limit = limit
        self._mapper = mapper
        self._store = store
        self._client = client
        self._url = tracking_url
        self._token = token_auth
        self._batch_size = batch_size
        self._backoff = backoff or Backoff()
        self._wakeup = asyncio.Event()
        self.stats = SinkStats()
        self._failures = 0
        self._clock = clock
        self._access = (
            SiteAccess(MatomoApi(client, api_url, token_auth), clock) if api_url else None
        )
        self._refused_retry = refused_retry
        self._parked = set(store.parked_sites())
        """Sites whose requests are parked: their later requests are parked unsent."""
        self._announced: set[int] = set()
        """Parked sites whose refusal this process has logged."""
        self._checks = 0
        self._next_check = clock()  # parked sites left by an earlier run: asked at once
        self._api_failing = False
        self._released = False
        """Whether the batch being sent is of released parked events, not of the journal."""
        self._batch_end = 0
        """The seq of the last event of the batch read (events parked unsent included)."""

    @classmethod
    def from_config(
        cls,
        store: Store,
        client: httpx.AsyncClient,
        matomo: MatomoConfig,
        mapper: RequestMapper,
        backoff: Backoff | None = None,
        *,
        batch_size: int | None = None,
    ) -> MatomoSink:
        """`batch_size`: instead of `matomo.batch_size`."""
        return cls(
            store,
            client,
            tracking_url=matomo.tracking_url,
            token_auth=matomo.token_auth.get_secret_value(),
            batch_size=matomo.batch_size if batch_size is None else batch_size,
            api_url=matomo.api_url,
            backoff=backoff,
            mapper=mapper,
            limit=matomo.outbox_limit,
        )

    def notify(self) -> None:
        """New events are in the journal."""
        self._wakeup.set()

    def backlog(self) -> int:
        return self._store.matomo_backlog()

    async def run(self) -> None:
        """Deliver forever; cancel to stop (a batch in flight is then sent again next time)."""
        while True:
            if not await self.flush_once():
                self._wakeup.clear()
                if not self._store.matomo_batch(1)[0]:
                    await self._sleep_until_work()

    async def _sleep_until_work(self) -> None:
        """Until new events arrive, it is time to ask again about parked sites, or
        `OUTBOX_RECHECK` passed: an import beside this process may have journaled events."""
        wait = OUTBOX_RECHECK
        if self._parked:
            wait = min(wait, max(0.0, self._next_check - self._clock()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), wait)

    async def flush_once(self, upto: int | None = None) -> bool:
        """Send one batch (of events with seqs up to `upto`, when given); False when nothing can
        be sent (no event left, or only events of refused sites). Sleeps the backoff after a
        failure. True without sending when another process kept the send lock for
        `LOCK_PATIENCE` seconds: it is sending from the same journal."""
        if self._parked and self._clock() >= self._next_check:
            await self._check_parked()
        lock = self._store.send_lock
        if not await acquire(lock, LOCK_PATIENCE):
            return True
        try:
            rows = self._sendable_batch(upto)
            if not rows:
                return False
            failed: _Retry | None = None
            try:
                await self._deliver(rows)
                self._advance(self._batch_end)
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
        """Deliver what is journaled, giving up quietly after `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while await self.flush_once():
                    pass
        except TimeoutError:
            pass
        left = self._store.matomo_pending()
        if left:
            log.info("matomo: %d events left in the state file for next time", left)

    def _sendable_batch(self, upto: int | None) -> list[JournalRow]:
        """The next batch, after parking the events of refused sites in it (a batch of only
        such events moves the cursor past them at once)."""
        while True:
            rows, self._released = self._store.matomo_batch(self._batch_size, upto)
            if rows:
                self._batch_end = rows[-1].seq
            if not self._parked:
                return rows
            held = [(row, site) for row in rows if (site := self.site_of(row)) in self._parked]
            if not held:
                return rows
            self._park(held)
            if len(held) < len(rows):
                held_ids = {row.seq for row, _ in held}
                return [row for row in rows if row.seq not in held_ids]
            self._advance(self._batch_end)

    def _advance(self, seq: int) -> None:
        """Every event up to `seq` is settled (taken, parked or refused): move past it."""
        if not self._released:
            self._store.advance(MATOMO, seq)

    async def _deliver(self, rows: Sequence[JournalRow]) -> None:
        sent_at = self._clock()
        status, answer = await self._post(rows)
        if status == 200 and answer.get("status") == "success":
            invalid = _int(answer.get("invalid"))
            if invalid == 0:
                self._acknowledge(rows)
                return
            await self._sort_invalid(rows, invalid, answer, sent_at)
            return
        if status in (401, 403):
            raise _Retry(f"Matomo refused token_auth (HTTP {status}); check token_auth")
        if 400 <= status < 500:
            if len(rows) == 1:
                self._dead_letter(rows, f"HTTP {status}: {_reason(answer)}")
                return
            await self._split(rows)
            return
        raise _Retry(f"Matomo answered HTTP {status} ({_reason(answer)})")

    async def _split(self, rows: Sequence[JournalRow]) -> None:
        half = len(rows) // 2
        await self._deliver(rows[:half])
        self._advance(rows[half - 1].seq)
        await self._deliver(rows[half:])

    async def _sort_invalid(
        self, rows: Sequence[JournalRow], invalid: int, answer: dict[str, object], sent_at: float
    ) -> None:
        """Tell requests refused for their site from requests bad in themselves, and settle
        each kind; Matomo tracked the rest."""
        whole = invalid >= len(rows)  # nothing of the batch was tracked
        indices = _indices(answer, len(rows))
        named = None if indices is None else {rows[i].seq for i in indices}
        try:
            writable = await self._writable(sent_at)
        except MatomoApiError as exc:
            cause = self._redact(str(exc))
            if whole:  # so it can be sent again
                raise _Retry(
                    f"Matomo refused all {len(rows)} requests of a batch, and its API cannot say "
                    f"which sites token_auth may track to ({cause}); check token_auth"
                ) from None
            log.warning("matomo: cannot ask which sites token_auth may track to (%s)", cause)
            self._settle(rows, named, invalid)
            return
        suspects = list(rows) if named is None else [row for row in rows if row.seq in named]
        refused = [
            (row, site)
            for row in suspects
            if (site := self.site_of(row)) is not None and site not in writable
        ]
        self._park(refused)
        refused_ids = {row.seq for row, _ in refused}
        rest = [row for row in rows if row.seq not in refused_ids]
        if named is None and len(refused) >= invalid:
            self._acknowledge(rest)
        elif named is None and whole:  # the requests left are bad in themselves
            self._dead_letter(rest, _INVALID)
        else:
            self._settle(rest, named, invalid - len(refused))

    def _settle(self, rows: Sequence[JournalRow], named: set[int] | None, invalid: int) -> None:
        """`invalid` of `rows` are bad in themselves: those Matomo named (`named`, ids) go to
        the dead-letter table and the rest is acknowledged; without names, all of them go
        there, marked as such."""
        if named is not None:
            self._dead_letter([row for row in rows if row.seq in named], _INVALID)
            self._acknowledge([row for row in rows if row.seq not in named])
            return
        self._dead_letter(
            rows,
            f"Matomo counted {invalid} of the {len(rows)} requests of this batch as invalid "
            "without saying which (a super-user token makes it say)",
        )

    async def _writable(self, since: float) -> frozenset[int]:
        if self._access is None:
            raise MatomoApiError("no Reporting API URL")
        return await self._access.writable(since)

    async def _check_parked(self) -> None:
        """Ask whether the refused sites take the token again; send their requests if so."""
        self._checks += 1
        self._next_check = self._clock() + self._refused_retry.delay(self._checks)
        try:
            writable = await self._writable(self._clock())
        except MatomoApiError as exc:
            if not self._api_failing:
                log.warning(
                    "matomo: cannot ask which sites token_auth may track to (%s); the requests "
                    "of site(s) %s stay kept until it can",
                    self._redact(str(exc)),
                    ", ".join(str(site) for site in sorted(self._parked)),
                )
            self._api_failing = True
            return
        self._api_failing = False
        counts = self._store.parked_sites()
        for site in sorted(self._parked):
            if site in writable:
                sent = self._store.release(site)
                self._parked.discard(site)
                self._announced.discard(site)
                log.info(
                    "matomo site %d takes the token again: %d kept event(s) are being sent",
                    site,
                    sent,
                )
            else:
                self._announce(site, counts.get(site, 0))
        if not self._parked:
            self._checks = 0

    def _park(self, rows: Sequence[tuple[JournalRow, int]]) -> None:
        if not rows:
            return
        self._store.park(rows)
        self.stats.parked += len(rows)
        new = {site for _, site in rows} - self._parked
        if new and not self._parked:
            self._checks = 0
            self._next_check = self._clock() + self._refused_retry.delay(1)
        self._parked |= new
        counts = self._store.parked_sites()
        for site in sorted(new):
            self._announce(site, counts.get(site, 0))

    def _announce(self, site: int, kept: int) -> None:
        """One error line per site and refusal, not one per batch."""
        if site in self._announced:
            return
        self._announced.add(site)
        log.error(
            "matomo site %d refuses the token (no write access or deleted): %d request(s) kept; "
            "they will be sent once access is back",
            site,
            kept,
        )

    def _acknowledge(self, rows: Sequence[JournalRow]) -> None:
        if self._released:
            self._store.unpark([row.seq for row in rows])
        self.stats.sent += len(rows)

    def _dead_letter(self, rows: Sequence[JournalRow], reason: str) -> None:
        if not rows:
            return
        self._store.dead_letter(rows, reason)
        self.stats.dead_lettered += len(rows)
        log.error(
            "matomo: %d request(s) refused (%s); moved to the dead-letter table",
            len(rows),
            reason,
        )

    def _request(self, row: JournalRow) -> str:
        if row.event is None:
            return row.payload or ""
        if self._mapper is None:
            raise TypeError("a MatomoSink without a mapper cannot send journaled events")
        return self._mapper.query_string(row.event, row.visitor_id)

    def site_of(self, row: JournalRow) -> int | None:
        """The site an event is for, with the current configuration (a ready-made request's
        `idsite`), or None when it names none."""
        if row.event is not None and self._mapper is not None:
            return self._mapper.site_id(row.event.session)
        payload = row.payload or ""
        values = parse_qs(payload.partition("?")[2] or payload).get("idsite")
        if not values or not values[0].isdigit():
            return None
        return int(values[0])

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    async def _post(self, rows: Sequence[JournalRow]) -> tuple[int, dict[str, object]]:
        # The token goes in the body only, never in a URL that could end up in a log.
        body = json.dumps(
            {"requests": [self._request(row) for row in rows], "token_auth": self._token},
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


def _indices(answer: dict[str, object], size: int) -> list[int] | None:
    """The invalid requests Matomo named (only to a super user), or None."""
    indices = answer.get("invalid_indices")
    if isinstance(indices, list) and all(isinstance(i, int) for i in indices):
        return [i for i in indices if 0 <= i < size]
    return None


_INVALID = "Matomo counted the request as invalid"


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _reason(answer: dict[str, object]) -> str:
    message = answer.get("message")
    return str(message) if message else "no reason given"
