"""`audimeter import`: finished sessions from access logs, sent to Matomo as if seen live.

Each listener line of a log is one finished session (it started `duration` seconds before the
line's time). It passes the same filters and proxy resolution as a live listener, gets the same
slot rule (look-alikes listening at the same time are told apart, a returning one is the same
visitor) and is replayed into the events a live session would have produced: a start, the
keep-alives that keep the Matomo visit whole (thinned as for sessions seen late, one per
`visit_length - 1` seconds) and an end. The requests are mapped exactly as `audimeter run` maps
them, so an imported session and a live one look alike in Matomo.

The file is read twice and never held whole: a first pass surveys it (its SHA-256 key, its
line count, where long sessions start), the second plans as it reads and journals the events
in chunks, with the history rows of the sessions they end. The configured outputs then take
them like live ones. A file is known by the SHA-256 of its decompressed content: importing the
same content again, plain or gzipped, journals nothing, and an interrupted import goes on where
it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import gzip
import hashlib
import heapq
import io
import itertools
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple, TextIO

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from audimeter.clients import USER_AGENT
from audimeter.config import Config, SourceConfig
from audimeter.events import Event, Session
from audimeter.journal import Stamper
from audimeter.matomo.mapping import SaltSource, listener_visitor_id, mapper_for
from audimeter.matomo.sink import Backoff, MatomoSink
from audimeter.observations import Listener
from audimeter.outputs.factory import make_outputs
from audimeter.policy import ListenerPolicy
from audimeter.privacy import SaltBook
from audimeter.sessionizer import Admit, keepalive_step, replay_session, replayed_requests
from audimeter.slots import SlotPool
from audimeter.sources.accesslog import (
    Skip,
    listener_scanner_for,
    spans_for,
    stamp_end,
    text_lines,
)
from audimeter.store import MATOMO, Store, StoreError

GZIP_MAGIC = b"\x1f\x8b"
MAX_DELIVERY_FAILURES = 5
"""Failed bulk POSTs in a row (with backoff: about 30 s) before the import gives up delivering."""
_CHUNK = 1 << 20
IMPORT_INSTANCE = "import:"
"""How the instance of an imported session begins (then the file's key): unlike any server's."""
_IMPORTED = IMPORT_INSTANCE + "*"


class ImportUsageError(Exception):
    """The command cannot run with this configuration or these arguments (exit status 2)."""


# -- configuration --------------------------------------------------------------------------------


def select_source(config: Config, name: str) -> SourceConfig:
    for source in config.sources:
        if source.name == name:
            return source
    names = ", ".join(s.name for s in config.sources)
    raise ImportUsageError(f"no source named {name!r} in the configuration (sources: {names})")


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    keepalive_interval: int
    catchup_gap: int | None
    min_session: int

    @classmethod
    def from_config(cls, config: Config) -> ReplaySettings:
        return cls(
            keepalive_interval=config.effective_keepalive,
            catchup_gap=config.matomo.visit_length - 1 if config.matomo else None,
            min_session=config.filters.min_session,
        )


# -- reading files --------------------------------------------------------------------------------


@contextmanager
def open_log(path: Path) -> Iterator[tuple[io.BufferedIOBase, io.BufferedIOBase]]:
    """(decompressed content, raw file): gzip is recognised by its magic bytes, not the name."""
    with path.open("rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if compressed:
            with gzip.GzipFile(fileobj=raw, mode="rb") as content:
                yield content, raw
        else:
            yield raw, raw


def read_texts(
    path: Path,
    advance: Callable[[int], object] | None = None,
    *,
    digest: hashlib._Hash | None = None,
) -> Iterator[str]:
    """The content of a log in pieces of whole lines (each ends with a line feed, the last
    line gets one), decoded as UTF-8 with bad bytes replaced.

    `advance` is told how many bytes of the file (as stored, compressed or not) were read;
    `digest` is fed the decompressed content: its SHA-256 is the file's key, the same for a
    log plain or gzipped.
    """
    with open_log(path) as (content, raw):
        done = 0
        tail = b""
        while chunk := content.read(_CHUNK):
            if digest is not None:
                digest.update(chunk)
            if advance is not None:
                position = raw.tell()
                advance(position - done)
                done = position
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                tail += chunk
                continue
            # Decoded a chunk at a time: a line end never falls inside a UTF-8 sequence.
            yield (tail + chunk[:cut]).decode("utf-8", "replace")
            tail = chunk[cut:]
        if tail:
            yield tail.decode("utf-8", "replace") + "\n"


# -- lines to sessions to events ------------------------------------------------------------------


@dataclass(slots=True)
class Counts:
    """What became of the lines of one file."""

    lines: int = 0
    sessions: int = 0
    """Listener lines that became sessions sent to Matomo."""
    filtered: int = 0
    """Listener lines left out by the filters, the proxy rules or the mount patterns."""
    too_short: int = 0
    """Listener lines shorter than `filters.min_session`."""
    bad: int = 0
    """Lines that are not lines of the log's format."""
    other: int = 0
    """Lines of other requests: admin and status pages, sources, refused listeners."""
    requests: int = 0

    def summary(self) -> str:
        return (
            f"{self.lines} lines, {self.sessions} listener sessions, {self.filtered} filtered, "
            f"{self.too_short} too short, {self.bad} bad, {self.other} not listeners"
        )


class Listen(NamedTuple):
    """One listener line that counts, with the listener as the policy admitted it.

    Ordered as the slot rule takes sessions: by start, then end, then line."""

    start: int
    end: int
    line: int
    mount: str
    ip: str
    user_agent: str
    referrer: str


def memoized(
    admit: Admit, *, by_address: bool = True
) -> Callable[[str, str, str, str], tuple[str, str, str] | None]:
    """`admit` for (source, address, player, referrer), remembered per distinct arguments.

    The policy is a pure function of the listener, and its user-agent filter costs tens of
    microseconds per call while a log repeats the same listeners and players many times. Log
    lines carry no X-Forwarded-For, so without `filters.exclude_addresses` and trusted proxies
    (`by_address` false) the address cannot change the outcome and is left out of the key.
    """
    seen: dict[tuple[str, str, str, str], tuple[str, str, str] | None] = {}

    def admitted(
        source: str, ip: str, user_agent: str, referrer: str
    ) -> tuple[str, str, str] | None:
        key = (source, ip if by_address else "", user_agent, referrer)
        found = seen.get(key, _UNSEEN)
        if found is not _UNSEEN:
            return found if by_address or found is None else (ip, found[1], found[2])
        listener = admit(source, Listener("", ip, user_agent, 0, referrer))
        result = None if listener is None else (listener.ip, listener.user_agent, listener.referrer)
        if len(seen) >= 200_000:
            seen.clear()
        seen[key] = result
        return result

    return admitted


_UNSEEN = ("", "", "")
"""Not in `memoized`'s memory (compared by identity: no outcome is this very tuple)."""

Admitted = Callable[[str, str, str, str], tuple[str, str, str] | None]


def collect_listens(
    texts: Iterable[str], source: SourceConfig, policy: Admitted, counts: Counts, first: int = 1
) -> Iterator[Listen]:
    """The listener lines of a log's text, in pieces of whole lines as `read_texts` gives them,
    that pass the source's mount patterns and the policy (`memoized`), as they come; `counts`
    is complete once they are all read. `first`: the number of the first line."""
    scan = listener_scanner_for(source.kind)
    # DNAS 1 serves one stream, which the live poller calls "/"; W3C lines all say /stream.
    fixed_mount = "/" if source.kind == "shoutcast1" else None
    wants = source.wants_mount
    mounts: dict[str, bool] = {}
    name = source.name
    new = tuple.__new__  # as Listen(...) does, without its Python-level __new__
    other = bad = filtered = 0
    number = first - 1
    for text in texts:
        following = number + 1
        for number, line in enumerate(text_lines(text), following):
            heard = scan(line)
            if heard.__class__ is Skip:
                if heard is Skip.OTHER:
                    other += 1
                elif heard is Skip.BAD and line.strip():
                    bad += 1
                continue
            ip, end, duration, path, _sent, referrer, agent = heard  # type: ignore[misc]
            mount = fixed_mount or path
            wanted = mounts.get(mount)
            if wanted is None:
                if len(mounts) > 10_000:  # paths of a log's odd requests: only a few are mounts
                    mounts.clear()
                wanted = mounts[mount] = wants(mount)
            admitted = policy(name, ip, agent, referrer) if wanted else None
            if admitted is None:
                filtered += 1
                continue
            yield new(Listen, (end - duration, end, number, mount, *admitted))
    counts.lines += number - first + 1
    counts.other += other
    counts.bad += bad
    counts.filtered += filtered


def first_lines(texts: Iterable[str], count: int) -> Iterator[str]:
    """The pieces of `read_texts` up to the first `count` lines."""
    for text in texts:
        if count <= 0:
            return
        lines = text.count("\n")
        if lines > count:
            text = text[: len(text) - len(text.split("\n", count)[-1])]
        count -= lines
        yield text


LONG = 3 * 3600
"""Seconds beyond which the survey notes a session with its listener (see `Survey`)."""
BLOCK = 1024
"""Lines per block of the survey: the plan moves on once per block."""
_NEVER = 1 << 62

Identity = tuple[str, str]
"""(address, player): the look-alikes among which the slot rule tells sessions apart."""


@dataclass(slots=True)
class Survey:
    """What a first pass over a log learns for the plan to stream in the second.

    Lines are written when a connection ends, so a line can describe a session that began
    long before the lines around it, and change the slots and the order of sessions read
    earlier. The survey bounds that: `floors[b]` is the earliest start of the sessions up to
    `LONG` seconds in blocks `b` and later, and `ahead` lists the longer ones (few) per
    listener. A session is settled once no later line of the same look-alikes can start
    before it, so the plan holds only the sessions of about the last `LONG` seconds, however
    long the log. A plan uses it up.
    """

    floors: list[int]
    ahead: dict[Identity, list[tuple[int, int]]]
    """Per listener, (line, earliest start of this and the later long sessions), last line
    first, so that the next one is at the end."""


def survey(texts: Iterable[str], setup: PlanSetup, counts: Counts) -> Survey:
    """The `Survey` of a log's text, in pieces of whole lines as `read_texts` gives them;
    `counts` gets the number of lines."""
    spans = spans_for(setup.source.kind)
    long = LONG
    floors: list[int] = []
    ahead: dict[Identity, list[tuple[int, int]]] = {}
    scratch = Counts()
    ends: dict[str, int | None] = {}  # the time of the lines of one second, by their field
    block, earliest, number = 0, _NEVER, 0
    for text in texts:
        lines = None if spans else text_lines(text)
        rows = spans(text) if spans else None
        base, count = number, text.count("\n")
        while number < base + count:
            if (number + 1) // BLOCK != block:
                floors.append(earliest)
                floors.extend([_NEVER] * ((number + 1) // BLOCK - block - 1))
                block, earliest = (number + 1) // BLOCK, _NEVER
            # The lines of this piece in this block (line n is in block n // BLOCK).
            first, stop = number - base, min(count, (block + 1) * BLOCK - 1 - base)
            slow: Iterable[int] = range(first, stop)
            if rows is not None:
                slow = []
                for index, (stamp, seconds) in enumerate(rows[first:stop], first):
                    if seconds:
                        end = ends.get(stamp, -1)
                        if end == -1:
                            if len(ends) > 100_000:
                                ends.clear()
                            end = ends[stamp] = stamp_end(stamp)
                        if end is not None and (start := end - int(seconds)) >= end - long:
                            # Whether the line is a listener's that counts does not matter
                            # here: another line's start only makes the floor lower, which
                            # holds sessions a little longer.
                            if start < earliest:
                                earliest = start
                            continue
                    slow.append(index)
            for index in slow:
                if lines is None:
                    lines = text_lines(text)
                for start, end, _line, _mount, ip, user_agent, _referrer in setup.listens(
                    (lines[index] + "\n",), scratch, first=base + index + 1
                ):
                    if end - start > long:
                        ahead.setdefault((ip, user_agent), []).append((base + index + 1, start))
                    elif start < earliest:
                        earliest = start
            number = base + stop
    floors.append(earliest)
    counts.lines += number
    earliest = _NEVER
    for index in range(len(floors) - 1, -1, -1):
        earliest = floors[index] = min(earliest, floors[index])
    for identity, longs in ahead.items():
        earliest = _NEVER
        ahead[identity] = [(line, earliest := min(earliest, s)) for line, s in reversed(longs)]
    return Survey(floors, ahead)


def lines_text(lines: Iterable[str]) -> str:
    """Lines (without line ends) as a piece of `read_texts`."""
    return "".join(line + "\n" for line in lines)


(
    _set_source,
    _set_instance,
    _set_mount,
    _set_client_id,
    _set_ip,
    _set_user_agent,
    _set_referrer,
    _set_started_at,
    _set_slot,
    _set_query,
) = (getattr(Session, field.name).__set__ for field in dataclasses.fields(Session))


def new_session(
    source: str,
    instance: str,
    mount: str,
    client_id: str,
    ip: str,
    user_agent: str,
    referrer: str,
    started_at: int,
    slot: int,
) -> Session:
    """`Session(...)` at half the cost, for the millions of sessions of a log: the frozen
    dataclass's `__init__` sets each field through `object.__setattr__`, this sets its slots."""
    session = _new(Session)
    _set_source(session, source)
    _set_instance(session, instance)
    _set_mount(session, mount)
    _set_client_id(session, client_id)
    _set_ip(session, ip)
    _set_user_agent(session, user_agent)
    _set_referrer(session, referrer)
    _set_started_at(session, started_at)
    _set_slot(session, slot)
    _set_query(session, "")
    return session


_new = object.__new__

Planned = tuple[Listen, int, int]
"""A session of a log as planned: (its line, its slot, the number of requests it becomes)."""


class _Slots:
    """The slot rule of one identity over sessions taken in `Listen` order."""

    __slots__ = ("busy", "last_end", "pool")

    def __init__(self, held_until: int) -> None:
        """`held_until`: the end of the session that holds slot 0."""
        self.pool = SlotPool()
        self.pool.take(0)
        self.busy = [(held_until, 0)]
        """A heap of (end, slot) of the sessions holding a slot."""
        self.last_end = held_until

    def take(self, start: int, end: int) -> int:
        busy, pool = self.busy, self.pool
        # Sessions that only touch (one ends as the other starts) do not overlap, so a
        # listener who reconnects stays the same visitor.
        while busy and busy[0][0] <= start:
            pool.release(heapq.heappop(busy)[1])
        slot = pool.acquire()
        heapq.heappush(busy, (end, slot))
        self.last_end = max(self.last_end, end)
        return slot


class Planner:
    """Every session of a log, streamed, given its `Survey`.

    The sessions are those of the whole-file plan, with the same slots, and each visitor's in
    the same order: by start, then end, then line. A visitor's sessions do not overlap, so
    its requests keep their time order when each session's are sent together. Sessions of
    different visitors may come in another order, which changes nothing in Matomo.
    """

    def __init__(self, found: Survey, *, settings: ReplaySettings, counts: Counts) -> None:
        self._floors = found.floors
        self._ahead = found.ahead
        self._settings = settings
        self._counts = counts
        self._waiting: dict[int, list[Listen]] = {}
        """Sessions read but not settled yet, by their start in minutes (of 64 s): sorting a
        block's worth costs less than a heap of them all."""
        self._minutes: list[int] = []
        """A heap of the keys of `_waiting`."""
        self._parked: dict[Identity, list[Listen]] = {}
        """Heaps of sessions that a later long session of the same look-alikes may still
        precede."""
        self._slots: dict[Identity, int | _Slots] = {}
        """Per identity with a session holding a slot: the end of that session when it is the
        only one (slot 0), else the slot rule's state."""
        self._settled = 0

    def plan(self, listens: Iterable[Listen]) -> Iterator[list[Planned]]:
        """The sessions, a block's worth at a time."""
        block, size, long = 0, BLOCK, LONG
        floors, ahead, wait = self._floors, self._ahead, self._wait
        waiting = self._waiting
        for listen in listens:
            start, end, line = listen[0], listen[1], listen[2]
            if line // size != block:
                block = line // size
                yield self._settle(floors[block])
            if end - start > long:
                self._passed((listen.ip, listen.user_agent), ahead)
            # `_wait`, inline: this runs for every session.
            same_minute = waiting.get(start >> 6)
            if same_minute is None:
                wait(listen)
            else:
                same_minute.append(listen)
        yield self._settle(_NEVER)

    def _wait(self, listen: Listen) -> None:
        minute = listen.start >> 6
        waiting = self._waiting.get(minute)
        if waiting is None:
            self._waiting[minute] = [listen]
            heapq.heappush(self._minutes, minute)
        else:
            waiting.append(listen)

    def _due(self, floor: int) -> list[Listen]:
        """The sessions waiting that start before `floor`, in `Listen` order."""
        minutes, waiting = self._minutes, self._waiting
        due: list[Listen] = []
        last = floor >> 6
        while minutes and minutes[0] < last:
            due += waiting.pop(heapq.heappop(minutes))
        if minutes and minutes[0] == last:
            due += [listen for listen in waiting[last] if listen.start < floor]
            rest = waiting[last] = [listen for listen in waiting[last] if listen.start >= floor]
            if not rest:
                del waiting[last]
                heapq.heappop(minutes)
        due.sort()
        return due

    def _passed(self, identity: Identity, ahead: dict[Identity, list[tuple[int, int]]]) -> None:
        """A long session of `identity` was read: what waited for it only may go on."""
        longs = ahead[identity]
        longs.pop()
        if longs:
            horizon = longs[-1][1]
        else:
            horizon = _NEVER
            del ahead[identity]
        parked = self._parked.get(identity)
        if parked is not None:
            while parked and parked[0].start < horizon:
                self._wait(heapq.heappop(parked))
            if not parked:
                del self._parked[identity]

    def _horizon(self, identity: Identity, floor: int) -> int:
        """No session of `identity` read from now on starts before this."""
        longs = self._ahead.get(identity)
        return floor if longs is None else min(floor, longs[-1][1])

    def _settle(self, floor: int) -> list[Planned]:
        """Slot the sessions that start before `floor` (but those a long session still to
        come may precede), and give them in `Listen` order."""
        slots, ahead, settings = self._slots, self._ahead, self._settings
        interval = settings.keepalive_interval
        step = keepalive_step(interval, settings.catchup_gap)
        min_session = settings.min_session
        ready: list[Planned] = []
        add = ready.append
        requests = too_short = 0
        for listen in self._due(floor):
            start, end, _line, _mount, ip, user_agent, _referrer = listen
            identity = (ip, user_agent)
            if identity in ahead and start >= self._horizon(identity, floor):
                heapq.heappush(self._parked.setdefault(identity, []), listen)
                continue
            state = slots.get(identity)
            if state is None or (state.__class__ is int and state <= start):
                slot = 0  # no look-alike holds a slot: the common case, kept cheap
                slots[identity] = end
            else:
                if state.__class__ is int:
                    state = slots[identity] = _Slots(state)
                slot = state.take(start, end)  # type: ignore[union-attr]
            if end - start < min_session:  # it held its slot all the same, as live
                too_short += 1
                continue
            # The session goes now, whole: one of the same visitor settled later starts after
            # this one ended, so none of its requests can come between.
            count = replayed_requests(end - start, interval, step)
            requests += count
            add((listen, slot, count))
        self._forget(floor)
        counts = self._counts
        counts.sessions += len(ready)
        counts.too_short += too_short
        counts.requests += requests
        return ready

    def _forget(self, floor: int) -> None:
        """Now and then, drop the slots of look-alikes whose sessions all ended by `floor`: any
        later one starts at `floor` or after, finds them all free, and takes slot 0, 1, …
        afresh."""
        self._settled += 1
        if self._settled % 32:
            return
        ahead, parked = self._ahead, self._parked
        for identity, state in list(self._slots.items()):
            last_end = state if isinstance(state, int) else state.last_end
            if last_end <= floor and identity not in ahead and identity not in parked:
                del self._slots[identity]


@dataclass(frozen=True, slots=True)
class PlanSetup:
    """The policy and settings of a source's plans."""

    source: SourceConfig
    policy: Admitted
    settings: ReplaySettings

    @classmethod
    def from_config(cls, config: Config, source: SourceConfig) -> PlanSetup:
        by_address = bool(
            config.filters.exclude_addresses
            or source.trusted_proxies
            or config.privacy.ip != "full"
        )
        return cls(
            source,
            memoized(ListenerPolicy.from_config(config), by_address=by_address),
            ReplaySettings.from_config(config),
        )

    def listens(self, texts: Iterable[str], counts: Counts, first: int = 1) -> Iterator[Listen]:
        return collect_listens(texts, self.source, self.policy, counts, first)

    def sessions(
        self, found: Survey, listens: Iterable[Listen], *, counts: Counts
    ) -> Iterator[list[Planned]]:
        """The sessions planned, a block's worth at a time."""
        return Planner(found, settings=self.settings, counts=counts).plan(listens)

    def events(
        self, found: Survey, listens: Iterable[Listen], *, key: str, counts: Counts
    ) -> Iterator[Event]:
        """The events of the sessions, each session's together; `key`: the file's."""
        source, instance = self.source.name, f"{IMPORT_INSTANCE}{key[:16]}"
        interval, catchup_gap = self.settings.keepalive_interval, self.settings.catchup_gap

        def replayed(planned: Planned) -> list[Event]:
            (start, end, line, mount, ip, user_agent, referrer), slot, _count = planned
            session = new_session(
                source, instance, mount, str(line), ip, user_agent, referrer, start, slot
            )
            return replay_session(
                session, end, keepalive_interval=interval, catchup_gap=catchup_gap
            )

        sessions = itertools.chain.from_iterable(self.sessions(found, listens, counts=counts))
        return itertools.chain.from_iterable(map(replayed, sessions))


def plan_lines(
    lines: Sequence[str], *, config: Config, source: SourceConfig, key: str, counts: Counts
) -> Iterator[Event]:
    """The events of a log's lines: pure, no I/O."""
    setup = PlanSetup.from_config(config, source)
    texts = (lines_text(lines),)
    found = survey(texts, setup, Counts())
    return setup.events(found, setup.listens(texts, counts), key=key, counts=counts)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: planning a log creates millions of objects and
    no cycles, and the collector's passes over them would cost a third of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- output ---------------------------------------------------------------------------------------


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self._unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{speed:,.0f} {self._unit}/s")


def _progress(console: Console, bytes_: bool) -> Progress:
    """A progress bar with rate and time left, shown only on a terminal."""
    rate: ProgressColumn = TransferSpeedColumn() if bytes_ else _RateColumn("requests")
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        rate,
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def _say(console: Console, message: str) -> None:
    console.print(message, markup=False, highlight=False, emoji=False, soft_wrap=True)


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dry_run_lines(salt: str | SaltSource) -> Callable[[Planned], str]:
    """The line `--dry-run` prints for each session of a plan, the Matomo visit it would
    become: start, seconds, requests, visitor, mount, address. A visitor id is worked out once
    per salt, listener and slot (listeners come back), a time's text once per minute."""
    visitors: dict[tuple[str, str, str, int], str] = {}
    minutes: dict[int, str] = {}
    suffixes = [f"{second:02d}Z" for second in range(60)]
    salt_at = (lambda _at: salt) if isinstance(salt, str) else salt

    def minute_text(minute: int) -> str:
        if len(minutes) > 100_000:
            minutes.clear()
        text = minutes[minute] = _iso(minute * 60)[:-3]
        return text

    def new_visitor(key: tuple[str, str, str, int]) -> str:
        if len(visitors) >= 100_000:
            visitors.clear()
        visitor = visitors[key] = listener_visitor_id(*key)
        return visitor

    def line(planned: Planned) -> str:
        (start, end, _line, mount, ip, user_agent, _referrer), slot, count = planned
        minute = start // 60
        key = (salt_at(start), ip, user_agent, slot)
        # A log's durations are never negative: the session ends at `start` or later.
        return (
            f"{minutes.get(minute) or minute_text(minute)}{suffixes[start % 60]} {end - start} s "
            f"{count} requests {visitors.get(key) or new_visitor(key)} {mount} {ip}\n"
        )

    return line


# -- delivery -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Delivery:
    sent: int = 0
    dead_lettered: int = 0
    left: int = 0
    """Requests still in the outbox when delivery stopped."""

    @property
    def complete(self) -> bool:
        return self.left == 0 and self.dead_lettered == 0


async def deliver(
    store: Store,
    config: Config,
    salt: str | SaltSource,
    console: Console,
    *,
    out: IO[str] = sys.stdout,
    backoff: Backoff | None = None,
    max_failures: int = MAX_DELIVERY_FAILURES,
    stall: float | None = None,
) -> Delivery:
    """Hand the journaled events to the configured outputs now, not those journaled later:
    [jsonl] writes them all; Matomo until no imported one is left (nor any journaled before it),
    `max_failures` attempts in a row failed, or none was delivered for `stall` seconds (by
    default twice Matomo's timeout plus 30 s). The `stdout` output (no [matomo], no [jsonl]) is
    `audimeter run`'s: it writes them there.

    `audimeter run` may be sending from the same journal meanwhile: whoever holds an output's
    lock sends its next batch, and what either delivers counts. Only imported events are
    counted: a live event journaled among them goes too, but it is the daemon's to report.
    """
    last = store.last_seq()
    matomo = config.matomo
    store.prepare_cursors(
        [name for name, table in (("matomo", matomo), ("jsonl", config.jsonl)) if table],
        drop_others=False,
    )
    patience = 2 * (matomo.timeout if matomo else 0) + 30 if stall is None else stall
    if config.jsonl is not None:
        jsonl = make_outputs(config.model_copy(update={"matomo": None}), store, out, None)[0]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience):
                while await jsonl.flush_once(upto=last):
                    pass
    if matomo is None:
        return Delivery()
    first = store.cursor(MATOMO)
    total = store.journal_count(first, last, instance=_IMPORTED)
    result = Delivery(left=total)
    if total == 0:
        return result
    clock = asyncio.get_running_loop().time
    async with httpx.AsyncClient(
        timeout=matomo.timeout, headers={"User-Agent": USER_AGENT}
    ) as client:
        sink = MatomoSink.from_config(
            store,
            client,
            matomo,
            mapper_for(config, matomo, salt, store.title_at),
            backoff,
            batch_size=matomo.import_batch_size,
        )
        failures = 0
        left = total
        moved = clock()
        at = first
        with _progress(console, bytes_=False) as progress:
            task = progress.add_task("sending to Matomo", total=total)
            while left:
                failed_before = sink.stats.failures
                await sink.flush_once(upto=last)
                # Only the events the cursor passed are counted: counting all those left after
                # each batch would read the rest of the journal once per batch.
                now = store.cursor(MATOMO)
                if now > at:
                    moved = clock()
                    passed = store.journal_count(at, now, instance=_IMPORTED)
                    left = 0 if now >= last else left - passed
                    at = now
                progress.update(task, completed=total - left)
                failures = 0 if sink.stats.failures == failed_before else failures + 1
                if failures >= max_failures or clock() - moved > patience:
                    break
    result.left = left and store.journal_count(store.cursor(MATOMO), last, instance=_IMPORTED)
    result.dead_lettered = store.dead_letter_count(first + 1, last, instance=_IMPORTED)
    result.sent = total - left - result.dead_lettered
    return result


# -- the command ----------------------------------------------------------------------------------


@dataclass
class _Run:
    config: Config
    source: SourceConfig
    console: Console
    err: TextIO
    dry_run: bool
    store: Store | None
    salt: str | SaltSource
    stamp: Stamper
    failed: bool = False

    def error(self, message: str) -> None:
        self.err.write(f"audimeter: {message}\n")
        self.err.flush()

    def import_file(self, path: Path) -> None:
        setup = PlanSetup.from_config(self.config, self.source)
        # The key tells a file imported before: without a state file there is none to tell.
        digest = None if self.store is None else hashlib.sha256()
        read = Counts()
        try:
            with gc_paused(), _progress(self.console, bytes_=True) as progress:
                # First pass: the file's key, its lines, and what the plan needs to stream.
                texts = self._read(path, progress, f"surveying {path.name}", digest)
                found = survey(texts, setup, read)
        except (OSError, EOFError, zlib.error) as exc:
            self.failed = True
            self.error(f"{path}: cannot read it ({exc})")
            return
        key = "" if digest is None else digest.hexdigest()
        done = 0 if self.store is None else self.store.import_progress(key)
        if done is None:
            _say(self.console, f"{path}: already imported (same content); skipped")
            return
        counts = Counts()
        try:
            with gc_paused(), _progress(self.console, bytes_=True) as progress:
                # The lines the survey saw, should the file have grown since.
                texts = first_lines(self._read(path, progress, f"reading {path.name}"), read.lines)
                listens = setup.listens(texts, counts)
                if self.dry_run:
                    line = dry_run_lines(self.salt)
                    write = self.console.file.write
                    # Written a block's worth at a time: one write per line costs more.
                    for planned in setup.sessions(found, listens, counts=counts):
                        write("".join(map(line, planned)))
                else:
                    events = setup.events(found, listens, key=key, counts=counts)
                    assert self.store is not None
                    stamped = self.stamp.each_session_once(itertools.islice(events, done, None))
                    self.store.commit_import(
                        key, self.source.name, str(path.resolve()), read.lines, stamped, done=done
                    )
        except (OSError, EOFError, zlib.error) as exc:
            self.failed = True
            self.error(f"{path}: cannot read it ({exc})")
            return
        except StoreError as exc:
            self.failed = True
            self.error(str(exc))
            return
        if self.dry_run:
            _say(self.console, f"{path}: {counts.summary()}; {counts.requests} requests (dry run)")
            return
        queued = f"{counts.requests} events journaled"
        if done:
            queued += f" ({done} of them by an earlier import that was interrupted)"
        _say(self.console, f"{path}: {counts.summary()}; {queued}")

    @staticmethod
    def _read(
        path: Path, progress: Progress, what: str, digest: hashlib._Hash | None = None
    ) -> Iterator[str]:
        task = progress.add_task(what, total=path.stat().st_size)
        return read_texts(path, lambda n: progress.advance(task, n), digest=digest)


def _oldest_first(paths: Sequence[Path]) -> list[Path]:
    """Files in the order of their last change, so a listener's sessions go in time order."""

    def changed(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    return sorted(paths, key=changed)


def run_import(
    config: Config,
    source_name: str,
    paths: Sequence[Path],
    *,
    dry_run: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Import the files; the exit status: 0 done, 1 a file or the delivery failed.

    Raises `ImportUsageError` (exit status 2) before touching anything when the source is
    unknown.
    """
    source = select_source(config, source_name)
    console = Console(file=out or sys.stdout)
    err = err or sys.stderr
    state = config.state.path
    store: Store | None = None
    if not dry_run or state.exists():
        # Its delivery reads the events of a session close together, and of some thousands of
        # sessions at a time: sharing one Session among them spares building one per event.
        store = Store.open(state, shared_sessions=20_000)
    try:
        salt: str | SaltSource
        if store is not None:
            salt = SaltBook.from_config(config, store)
        else:
            salt = "dry-run"
            err.write(
                f"audimeter: dry run without a state file ({state}): "
                "the visitor ids shown are not the ones a real import gives\n"
            )
        run = _Run(config, source, console, err, dry_run, store, salt, Stamper(config, salt))
        for path in _oldest_first(paths):
            run.import_file(path)
        if dry_run or store is None:
            return 1 if run.failed else 0
        delivery = asyncio.run(deliver(store, config, salt, console, out=console.file))
        if delivery.sent or not delivery.complete:
            _say(console, f"matomo: {delivery.sent} requests delivered")
        if delivery.dead_lettered:
            run.error(
                f"matomo refused {delivery.dead_lettered} requests; they are kept in the "
                f"dead_letter table of {state}"
            )
        if delivery.left:
            run.error(
                f"matomo: {delivery.left} requests not delivered yet, kept in {state}; "
                "`audimeter run` or the next `audimeter import` delivers them"
            )
        return 0 if delivery.complete and not run.failed else 1
    finally:
        if store is not None:
            store.close()
