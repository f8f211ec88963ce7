"""What audimeter keeps of a listener, for how long, and how to make it forget one.

`[privacy]` decides how much of a listener is kept and sent. `ListenerPolicy` applies it once per
session, after the filters and proxy resolution have seen the full address: from then on the
session, the state file, stdout's JSON lines, Matomo's requests and imports carry only what is
left. `ip = "anonymize"` keeps an IPv4 address's /24 and an IPv6 address's /48 (an IPv4 address
inside IPv6, `::ffff:a.b.c.d` or 6to4's `2002:…`, counts as that IPv4 address); `ip = "none"`
and `user_agent = "drop"` keep nothing.

Visitor ids are salted hashes (`matomo.mapping.visitor_id`). With `salt_rotation`, each UTC
period (day; ISO week, from Monday; month) has its own random salt, so a listener cannot be
followed from one period to the next. A session takes the salt of the period it *started* in, for
all its requests, so that its Matomo visit stays whole across a period boundary. Salts are kept
in the state file; at the first use in a new period, audimeter deletes every salt but those of
the current and the previous period, of periods in which a still-open session started, and of
periods used since the previous clean-up (a session may have taken one and not be stored yet).

`audimeter forget` deletes what the state file holds about one address: see `forget`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from audimeter.addresses import Address, parse_address
from audimeter.config import Config, SaltRotation
from audimeter.inbox import Inbox
from audimeter.store import Forgotten, Store

_DAY = 86_400
_LATEST = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime can show


# -- salts ----------------------------------------------------------------------------------------


def _utc_day(day: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)


def _day(timestamp: int) -> int:
    return min(max(timestamp, 0), _LATEST) // _DAY


def period_of_day(day: int, rotation: SaltRotation) -> str:
    """The name of the period a UTC day (days since 1970-01-01) belongs to.

    `2026-11-05` (daily), `2026-W45` (weekly: ISO weeks, from Monday), `2026-11` (monthly),
    `never`.
    """
    if rotation == "never":
        return "never"
    date = _utc_day(day)
    if rotation == "daily":
        return date.strftime("%Y-%m-%d")
    if rotation == "weekly":
        year, week, _ = date.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return date.strftime("%Y-%m")


def period_of(timestamp: int, rotation: SaltRotation) -> str:
    """The period (see `period_of_day`) a unix time falls in, in UTC."""
    return period_of_day(_day(timestamp), rotation)


def first_day_of_period(day: int, rotation: SaltRotation) -> int:
    """The first day of the period holding `day`."""
    if rotation == "daily":
        return day
    if rotation == "weekly":
        return day - _utc_day(day).weekday()
    if rotation == "monthly":
        return day - (_utc_day(day).day - 1)
    return 0


class SaltBook:
    """The visitor-id salt for a session that started at a given time: `salts(started_at)`.

    With `never`, the one salt kept in the state file since the first run (meta
    `visitor_salt`), as before rotation existed. Otherwise the salt of the UTC period the
    session started in, generated when first needed and kept in the `salts` table; old ones are
    deleted as the module docstring says.
    """

    def __init__(
        self,
        store: Store,
        rotation: SaltRotation = "never",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._rotation: SaltRotation = rotation
        self._clock = clock
        self._fixed: str | None = None
        self._salts: dict[str, str] = {}
        """The salts known to be kept in the store, by period."""
        self._used: set[str] = set()
        """Periods whose salts were handed out since the last clean-up."""
        self._periods: dict[int, str] = {}
        """Period names of days, remembered."""
        self._cleaned_for: str | None = None
        """The current period at the last clean-up."""

    @classmethod
    def from_config(cls, config: Config, store: Store) -> SaltBook:
        return cls(store, config.privacy.salt_rotation)

    @property
    def rotation(self) -> SaltRotation:
        return self._rotation

    def __call__(self, started_at: int) -> str:
        if self._rotation == "never":
            if self._fixed is None:
                self._fixed = self._store.salt()
                self._store.prune_salts(())  # left from a rotation configured before
            return self._fixed
        today = _day(int(self._clock()))
        if self._period(today) != self._cleaned_for:
            self._clean_up(today)
        period = self._period(_day(started_at))
        self._used.add(period)
        salt = self._salts.get(period)
        if salt is None:
            salt = self._salts[period] = self._store.period_salt(period)
        return salt

    salt_for = __call__

    def _period(self, day: int) -> str:
        period = self._periods.get(day)
        if period is None:
            if len(self._periods) > 10_000:
                self._periods.clear()
            period = self._periods[day] = period_of_day(day, self._rotation)
        return period

    def _clean_up(self, today: int) -> None:
        """Delete the salts no session can need any more (see the module docstring)."""
        current = self._period(today)
        previous = self._period(first_day_of_period(today, self._rotation) - 1)
        keep = {current, previous}
        keep.update(self._period(day) for day in self._store.open_session_days())
        # Salts handed out since the last clean-up may belong to sessions not stored yet.
        keep.update(self._used)
        self._store.prune_salts(keep)
        self._salts = {p: s for p, s in self._salts.items() if p in keep}
        self._used = set()
        self._cleaned_for = current


# -- forgetting an address ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForgetReport:
    """What `forget` removed, and the lines that tell it."""

    address: Address
    forgotten: Forgotten

    def lines(self) -> list[str]:
        f = self.forgotten
        return [
            f"open sessions: {f.sessions} removed"
            + (" (their end will never be sent to Matomo)" if f.sessions else ""),
            f"ended sessions kept to recognise late notices: {f.ended_sessions} removed",
            f"journaled events: {f.events} removed"
            + (" (no output will ever send them)" if f.events else ""),
            f"dead letters: {f.dead_letters} removed",
            f"finished sessions in the history: {f.history} removed",
            f"webhook notices: {f.inbox} removed",
        ]


class AddressMatcher:
    """Whether texts found in the state file name one address, in whatever form they have it."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self._seen: dict[str, bool] = {}

    def __call__(self, text: str) -> bool:
        found = self._seen.get(text)
        if found is None:
            if len(self._seen) > 100_000:
                self._seen.clear()
            found = self._seen[text] = parse_address(text) == self.address
        return found

    def notice(self, payload: str) -> bool:
        """A webhook notice (JSON) from the address, or forwarded for it."""
        try:
            data = json.loads(payload)
        except ValueError:
            return False
        if not isinstance(data, dict):
            return False
        texts = [data.get("ip")]
        forwarded = data.get("forwarded_for")
        if isinstance(forwarded, str):
            texts += forwarded.split(",")
        return any(isinstance(text, str) and self(text) for text in texts)


def forget(store: Store, address: Address, inbox: Inbox | None = None) -> ForgetReport:
    """Delete everything `store` holds about `address`: the open sessions with it (their end
    will never be sent), the journaled, parked and refused events of it, the history of the
    visitors they name, and the webhook notices from it, in the store and in `inbox` (the inbox
    file, when there is one). Use a store from `Store.open_exclusive`."""
    matches = AddressMatcher(address)
    forgotten = store.forget(address=matches, notice=matches.notice)
    if inbox is not None:
        forgotten = replace(forgotten, inbox=forgotten.inbox + inbox.forget(matches.notice))
    return ForgetReport(address, forgotten)
