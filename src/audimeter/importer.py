"""`audimeter import`: finished sessions from access logs, sent to Matomo as if seen live.

Each listener line of a log is one finished session (it started `duration` seconds before the
line's time). It passes the same filters and proxy resolution as a live listener, gets the same
slot rule (look-alikes listening at the same time are told apart, a returning one is the same
visitor) and is replayed into the events a live session would have produced: a start, the
keep-alives that keep the Matomo visit whole (thinned as for sessions seen late, one per
`visit_length - 1` seconds) and an end. The requests are mapped exactly as `audimeter run` maps
them, so an imported session and a live one look alike in Matomo.

A file is known by the SHA-256 of its decompressed content. Its requests and that key are
committed to the state file in one transaction, then delivered from the outbox like live ones;
importing the same content again, plain or gzipped, sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import hashlib
import heapq
import io
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
from audimeter.events import Event, Session, SessionKeptAlive, SessionStarted
from audimeter.journal import Stamper
from audimeter.matomo.mapping import SaltSource, mapper_for, visitor_id
from audimeter.matomo.sink import Backoff, MatomoSink
from audimeter.observations import Listener
from audimeter.outputs.factory import make_outputs
from audimeter.policy import ListenerPolicy
from audimeter.privacy import SaltBook
from audimeter.sessionizer import Admit, replay_session
from audimeter.sources.accesslog import Skip, scanner_for
from audimeter.store import MATOMO, Store, StoreError

GZIP_MAGIC = b"\x1f\x8b"
MAX_DELIVERY_FAILURES = 5
"""Failed bulk POSTs in a row (with backoff: about 30 s) before the import gives up delivering."""
_CHUNK = 1 << 20
_PROGRESS_EVERY = 4096
"""Lines between two updates of the reading progress bar."""


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


def file_key(path: Path) -> str:
    """SHA-256 of the decompressed content: the same log plain or gzipped has the same key."""
    digest = hashlib.sha256()
    with open_log(path) as (content, _raw):
        while chunk := content.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_lines(path: Path, advance: Callable[[int], object] | None = None) -> Iterator[str]:
    """The lines of a log (without line ends), decoded as UTF-8 with bad bytes replaced.

    `advance` is told how many bytes of the file (as stored, compressed or not) were read.
    """
    with open_log(path) as (content, raw):
        done = 0
        for number, line in enumerate(content, 1):
            if advance is not None and number % _PROGRESS_EVERY == 0:
                position = raw.tell()
                advance(position - done)
                done = position
            yield line.rstrip(b"\r\n").decode("utf-8", "replace")
        if advance is not None:
            advance(raw.tell() - done)


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
    """One listener line that counts, with the listener as the policy admitted it."""

    line: int
    mount: str
    ip: str
    user_agent: str
    referrer: str
    start: int
    end: int


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
        if key in seen:
            found = seen[key]
            return found if by_address or found is None else (ip, found[1], found[2])
        listener = admit(source, Listener("", ip, user_agent, 0, referrer))
        result = None if listener is None else (listener.ip, listener.user_agent, listener.referrer)
        if len(seen) >= 200_000:
            seen.clear()
        seen[key] = result
        return result

    return admitted


def collect_listens(
    lines: Iterable[str],
    source: SourceConfig,
    admit: Admit,
    counts: Counts,
    *,
    by_address: bool = True,
) -> list[Listen]:
    """The listener lines of a log that pass the source's mount patterns and the policy.

    `by_address`: whether the policy looks at addresses (see `memoized`).
    """
    scan = scanner_for(source.kind)
    # DNAS 1 serves one stream, which the live poller calls "/"; W3C lines all say /stream.
    fixed_mount = "/" if source.kind == "shoutcast1" else None
    wants = source.wants_mount
    policy = memoized(admit, by_address=by_address)
    name = source.name
    listens: list[Listen] = []
    number = 0
    for number, line in enumerate(lines, 1):
        entry = scan(line)
        if isinstance(entry, Skip):
            if entry is Skip.OTHER:
                counts.other += 1
            elif entry is Skip.BAD and line.strip():
                counts.bad += 1
            continue
        mount = fixed_mount or entry.path
        admitted = (
            policy(name, entry.ip, entry.user_agent, entry.referrer) if wants(mount) else None
        )
        if admitted is None:
            counts.filtered += 1
            continue
        end = entry.end
        listens.append(Listen(number, mount, *admitted, end - entry.duration, end))
    counts.lines += number
    return listens


def assign_slots(listens: Sequence[Listen]) -> list[int]:
    """Each session's slot: the smallest not held by an overlapping session of the same
    address and player, as live. Sessions that only touch (one ends as the other starts) do not
    overlap, so a listener who reconnects stays the same visitor."""
    slots = [0] * len(listens)
    groups: dict[tuple[str, str], list[int]] = {}
    for index, listen in enumerate(listens):
        groups.setdefault((listen.ip, listen.user_agent), []).append(index)
    for indices in groups.values():
        if len(indices) < 2:
            continue
        indices.sort(key=lambda i: (listens[i].start, listens[i].end, listens[i].line))
        busy: list[tuple[int, int]] = []  # (end, slot) of sessions still going
        free: list[int] = []
        fresh = 0
        for index in indices:
            listen = listens[index]
            while busy and busy[0][0] <= listen.start:
                heapq.heappush(free, heapq.heappop(busy)[1])
            if free:
                slot = heapq.heappop(free)
            else:
                slot, fresh = fresh, fresh + 1
            slots[index] = slot
            heapq.heappush(busy, (listen.end, slot))
    return slots


def request_time(event: Event) -> int:
    """The time Matomo gives the event's request (its `cdt`, as the mapper sets it)."""
    start = event.session.started_at
    return start if isinstance(event, SessionStarted) else max(start, event.at - 1)


def replay_listens(
    listens: Sequence[Listen],
    *,
    source: str,
    instance: str,
    settings: ReplaySettings,
    counts: Counts,
) -> list[Event]:
    """Every event of every session, in the order of their requests' times (stable)."""
    events: list[Event] = []
    for listen, slot in zip(listens, assign_slots(listens), strict=True):
        session = Session(
            source=source,
            instance=instance,
            mount=listen.mount,
            client_id=str(listen.line),
            ip=listen.ip,
            user_agent=listen.user_agent,
            referrer=listen.referrer,
            started_at=listen.start,
            slot=slot,
        )
        replayed = replay_session(
            session,
            listen.end,
            keepalive_interval=settings.keepalive_interval,
            catchup_gap=settings.catchup_gap,
            min_session=settings.min_session,
        )
        if replayed:
            counts.sessions += 1
            events.extend(replayed)
        else:
            counts.too_short += 1
    events.sort(key=request_time)
    counts.requests = len(events)
    return events


def plan_lines(
    lines: Iterable[str], *, config: Config, source: SourceConfig, key: str, counts: Counts
) -> list[Event]:
    """The events of a log's lines, sorted by their requests' times: pure, no I/O."""
    listens = collect_listens(
        lines,
        source,
        ListenerPolicy.from_config(config),
        counts,
        by_address=bool(
            config.filters.exclude_addresses
            or source.trusted_proxies
            or config.privacy.ip != "full"
        ),
    )
    return replay_listens(
        listens,
        source=source.name,
        instance=f"import:{key[:16]}",
        settings=ReplaySettings.from_config(config),
        counts=counts,
    )


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


_KINDS = {SessionStarted: "pageview", SessionKeptAlive: "keep-alive"}


def dry_run_line(event: Event, salt: str | SaltSource) -> str:
    """time, kind, visitor, mount, ip of the request an event would become."""
    session = event.session
    kind = _KINDS.get(type(event), "end")
    return (
        f"{_iso(request_time(event))} {kind} {visitor_id(salt, session)} "
        f"{session.mount} {session.ip}"
    )


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
    [jsonl] writes them all; Matomo until none is left, `max_failures` attempts in a row failed,
    or none was delivered for `stall` seconds (by default twice Matomo's timeout plus 30 s).
    The `stdout` output (no [matomo], no [jsonl]) is `audimeter run`'s: it writes them there.

    `audimeter run` may be sending from the same journal meanwhile: whoever holds an output's
    lock sends its next batch, and what either delivers counts.
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
    total = store.journal_count(first, last)
    result = Delivery(left=total)
    if total == 0:
        return result
    clock = asyncio.get_running_loop().time
    async with httpx.AsyncClient(
        timeout=matomo.timeout, headers={"User-Agent": USER_AGENT}
    ) as client:
        sink = MatomoSink.from_config(
            store, client, matomo, mapper_for(config, matomo, salt), backoff
        )
        failures = 0
        left = total
        moved = clock()
        with _progress(console, bytes_=False) as progress:
            task = progress.add_task("sending to Matomo", total=total)
            while left:
                failed_before = sink.stats.failures
                await sink.flush_once(upto=last)
                now_left = store.journal_count(store.cursor(MATOMO), last)
                if now_left < left:
                    moved = clock()
                left = now_left
                progress.update(task, completed=total - left)
                failures = 0 if sink.stats.failures == failed_before else failures + 1
                if failures >= max_failures or clock() - moved > patience:
                    break
    result.left = left
    result.dead_lettered = store.dead_letter_count(first + 1, last)
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
        try:
            key = file_key(path)
        except (OSError, EOFError, zlib.error) as exc:
            self.failed = True
            self.error(f"{path}: cannot read it ({exc})")
            return
        done = 0 if self.store is None else self.store.import_progress(key)
        if done is None:
            _say(self.console, f"{path}: already imported (same content); skipped")
            return
        counts = Counts()
        try:
            with gc_paused():
                events = self._plan(path, key, counts)
                if not self.dry_run:
                    stamped = [self.stamp(event) for event in events]
        except (OSError, EOFError, zlib.error) as exc:
            self.failed = True
            self.error(f"{path}: cannot read it ({exc})")
            return
        if self.dry_run:
            write = self.console.file.write
            for event in events:
                write(dry_run_line(event, self.salt) + "\n")
            _say(self.console, f"{path}: {counts.summary()}; {counts.requests} requests (dry run)")
            return
        assert self.store is not None
        try:
            self.store.commit_import(
                key, self.source.name, str(path.resolve()), counts.lines, stamped, done=done
            )
        except StoreError as exc:
            self.failed = True
            self.error(str(exc))
            return
        queued = f"{counts.requests} events journaled"
        if done:
            queued += f" ({done} of them by an earlier import that was interrupted)"
        _say(self.console, f"{path}: {counts.summary()}; {queued}")

    def _plan(self, path: Path, key: str, counts: Counts) -> list[Event]:
        with _progress(self.console, bytes_=True) as progress:
            task = progress.add_task(f"reading {path.name}", total=path.stat().st_size)
            lines = read_lines(path, lambda n: progress.advance(task, n))
            return plan_lines(lines, config=self.config, source=self.source, key=key, counts=counts)


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
        store = Store.open(state)
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
