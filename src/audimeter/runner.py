"""`audimeter run`: sources → sessionizer → store (journal) → outputs, until told to stop.

The title on air per mount goes from the same observations through `TitleTracker` into the
store's `titles`, committed with the sessions and events of the same step.

Exact ends come from two more inputs, both optional: access logs followed by `LogFollower`, and
Icecast's URL authentication, whose receiver (a process of its own) records every notice in the
inbox file before it answers; the loop turns inbox rows into observations and commits how far it
took them with the outcome (audimeter.inbox).

Each source polls on its own schedule, so a slow server never delays another. Their observations
pass one at a time through a single pipeline step that runs the sessionizer and commits what
changed, with the events it journals, in one transaction before any output sees them. The
hand-over queue holds one observation: a source parses its next listing only once the previous
one has been taken, which bounds memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import httpx

from audimeter import __version__
from audimeter.clients import USER_AGENT, source_client
from audimeter.config import Config
from audimeter.events import Event
from audimeter.inbox import Inbox, inbox_path
from audimeter.journal import Stamper
from audimeter.logs import ProblemLog
from audimeter.matomo.mapping import mapper_for
from audimeter.matomo.sink import MatomoSink
from audimeter.metricsserver import MetricsServer
from audimeter.nowplaying import TitleTracker
from audimeter.observations import LogPosition, Observation, Tick
from audimeter.outputs.base import KeepaliveLimits
from audimeter.outputs.factory import make_outputs
from audimeter.outputs.jsonl import JsonLinesOutput
from audimeter.policy import ListenerPolicy
from audimeter.privacy import SaltBook
from audimeter.sdnotify import Heartbeat, Notifier
from audimeter.sessionizer import Sessionizer
from audimeter.sources import Poller, SourceError
from audimeter.sources.factory import make_poller
from audimeter.sources.logfollower import LogFollower
from audimeter.store import SourceStatus, Stamped, Store
from audimeter.telemetry import Telemetry
from audimeter.webhook import decode
from audimeter.webhookprocess import ReceiverProcess

log = logging.getLogger(__name__)

SHUTDOWN_DRAIN_SECONDS = 5.0
STATUS_EVERY = 5.0
"""Seconds between two writes of the status `audimeter status` reads."""

EventListener = Callable[[list[Event]], None]


class Pipeline:
    """The synchronous heart: observations in, events journaled and the outputs woken.

    The journal is bounded per output (`KeepaliveLimits`): an output that lags its limit
    (Matomo unreachable for days) skips keep-alives; starts and ends always are journaled, so
    every session keeps its true start and end, and only the continuity of long visits suffers.
    """

    def __init__(
        self,
        store: Store,
        sessionizer: Sessionizer,
        stamp: Callable[[Event], Stamped],
        listeners: Sequence[EventListener] = (),
        limits: KeepaliveLimits | None = None,
        titles: TitleTracker | None = None,
    ) -> None:
        self._store = store
        self._sessionizer = sessionizer
        self._titles = titles
        self._stamp = stamp
        self._listeners = list(listeners)
        self._limits = limits
        self._stored_instances: dict[str, str] | None = None
        """The server instances last committed: written again only when they change."""

    @property
    def sessionizer(self) -> Sessionizer:
        return self._sessionizer

    def feed(
        self,
        observations: Sequence[Observation],
        *,
        consumed_inbox: Sequence[int] = (),
        inbox_position: tuple[str, int] | None = None,
        log_positions: Sequence[LogPosition] = (),
    ) -> list[Event]:
        """Run the observations through the sessionizer and commit the outcome.

        `consumed_inbox`, `inbox_position` and `log_positions` say where the observations came
        from; they are committed with the outcome, so that nothing is lost or taken twice after
        a crash.
        """
        events: list[Event] = []
        titles = self._titles
        for observation in observations:
            events.extend(self._sessionizer.observe(observation))
            if titles is not None:
                titles.observe(observation)
        changes = self._sessionizer.take_changes()
        plays = titles.take_changes() if titles is not None else []
        quiet = all(isinstance(o, Tick) for o in observations)
        if quiet and not (
            events or changes or plays or consumed_inbox or inbox_position or log_positions
        ):
            return events
        kept = self._limits.admit(events) if self._limits is not None else events
        instances = self._sessionizer.instances()
        self._store.commit(
            changes,
            self._sessionizer.mount_records(),
            [self._stamp(event) for event in kept],
            instances=None if instances == self._stored_instances else instances,
            consumed_inbox=consumed_inbox,
            inbox_position=inbox_position,
            log_positions=log_positions,
            plays=plays,
        )
        self._stored_instances = instances
        for listener in self._listeners:
            listener(events)
        return events


class Upkeep:
    """Once a second: delete the journal's events every output has passed and the keep-alives
    only outputs over their limit have not; once an hour, history older than `keep_days`."""

    def __init__(
        self,
        store: Store,
        limits: KeepaliveLimits,
        keep_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._limits = limits
        self._keep = keep_days * 86_400
        self._clock = clock
        self._tidied_at = -math.inf
        self._history_at = -math.inf

    def __call__(self) -> None:
        now = self._clock()
        if now - self._tidied_at < 1:
            return
        self._tidied_at = now
        self._limits.prune()
        self._store.prune_journal()
        if now - self._history_at >= 3600:
            self._history_at = now
            pruned = self._store.prune_history(int(now) - self._keep)
            if pruned:
                log.info(
                    "history: %d session(s) older than %d days deleted",
                    pruned,
                    self._keep // 86_400,
                )


class StatusBoard:
    """What `audimeter status` shows of this run, written to the state file: its start; each
    source's last good poll and problem, after every poll (one small UPSERT, so the age status
    shows is true to the poll); the main loop's last round at most every `STATUS_EVERY` s."""

    def __init__(
        self, store: Store, config: Config, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._clock = clock
        self.started_at = clock()
        self._sources = {
            s.name: SourceStatus(s.name, s.kind, "", s.outage_grace, None, None)
            for s in config.sources
        }
        self._beat_at = -math.inf
        store.record_run(self.started_at, self._sources.values())

    def polled(self, poller: Poller, problem: str | None) -> None:
        """A poll of `poller` ended, with `problem` if it failed."""
        was = self._sources[poller.name]
        software = poller.software or was.software
        if problem is None:
            status = SourceStatus(was.name, was.kind, software, was.grace, self._clock(), None)
        else:
            line = " ".join(problem.split())  # one line, whatever the server answered
            status = SourceStatus(was.name, was.kind, software, was.grace, was.last_ok, line)
        self._sources[poller.name] = status
        self._store.record_source(status)

    def beat(self) -> None:
        """A main-loop round ended."""
        now = self._clock()
        if now - self._beat_at >= STATUS_EVERY:
            self._beat_at = now
            self._store.record_beat(now)

    def stopped(self) -> None:
        self._store.record_beat(None)


def build_sessionizer(config: Config, store: Store) -> Sessionizer:
    catchup = config.matomo.visit_length - 1 if config.matomo else None
    return Sessionizer(
        keepalive_interval=config.effective_keepalive,
        outage_grace=max(s.outage_grace for s in config.sources),
        source_graces={s.name: s.outage_grace for s in config.sources},
        catchup_gap=catchup,
        min_session=config.filters.min_session,
        admit=ListenerPolicy.from_config(config),
        exact_ends={
            s.name: math.ceil(s.reconcile_delay)
            for s in config.sources
            if s.access_log is not None or (config.webhook is not None and s.kind == "icecast")
        },
        mounts=store.load_mounts(),
        sessions=store.load_sessions(),
        gone=store.load_gone(),
        remembered=store.load_remembered(),
        instances=store.load_instances(),
        resumed_at=int(time.time()),
    )


def build_title_tracker(config: Config, store: Store, sessionizer: Sessionizer) -> TitleTracker:
    return TitleTracker(
        outage_grace=max(s.outage_grace for s in config.sources),
        source_graces={s.name: s.outage_grace for s in config.sources},
        plays=store.load_plays(),
        mounts=sessionizer.mount_records(),
    )


def _follow(follower: LogFollower, pipeline: Pipeline) -> None:
    """Feed what the access log says since the last read, with the position that it reached."""
    read = follower.read()
    if read is not None:
        left, position = read
        pipeline.feed(left, log_positions=[position])


def drain_inbox(store: Store, inbox: Inbox, pipeline: Pipeline, batch: int = 500) -> None:
    """Feed the notices the webhook receiver recorded, each taken once: those an earlier version
    kept in the state file (deleted with the outcome), then those of the inbox file after the
    position committed with the outcome, which are deleted from it afterwards."""
    while rows := store.inbox_batch(batch):
        pipeline.feed(_notices(rows), consumed_inbox=[row_id for row_id, _ in rows])
    position = store.inbox_position(inbox.token)
    taken = False
    while rows := inbox.after(position, batch):
        position = rows[-1][0]
        pipeline.feed(_notices(rows), inbox_position=(inbox.token, position))
        taken = True
    if taken:
        inbox.prune(position)


def _notices(rows: Sequence[tuple[int, str]]) -> list[Observation]:
    observations: list[Observation] = []
    for _, payload in rows:
        try:
            observations.append(decode(payload))
        except ValueError as exc:
            log.error("webhook: an unreadable notice in the inbox was dropped (%s)", exc)
    return observations


async def _poll_forever(
    poller: Poller,
    queue: asyncio.Queue[Observation],
    board: StatusBoard,
    telemetry: Telemetry,
) -> None:
    problems = ProblemLog(log)
    interval = poller.poll_interval
    while True:
        started = time.monotonic()
        try:
            await poller.poll(queue.put)
        except SourceError as exc:
            telemetry.polled(poller.name, time.monotonic() - started, exc)
            problems.failed(poller.name, str(exc), "%s (retrying every poll)", exc)
            board.polled(poller, str(exc))
        else:
            telemetry.polled(poller.name, time.monotonic() - started, None)
            problems.succeeded(poller.name, "source %s: answering again", poller.name)
            board.polled(poller, None)
        await asyncio.sleep(max(0.0, started + interval - time.monotonic()))


async def run(config: Config, stop: asyncio.Event, out: TextIO = sys.stdout) -> None:
    """Run until `stop` is set; open sessions stay in the store for the next run."""
    store = Store.open(config.state.path)
    try:
        await _run(config, store, stop, out)
    finally:
        store.close()


async def _run(config: Config, store: Store, stop: asyncio.Event, out: TextIO) -> None:
    sessionizer = build_sessionizer(config, store)
    resumed = sum(1 for _ in sessionizer.sessions())
    salt = SaltBook.from_config(config, store)
    async with contextlib.AsyncExitStack() as exit_stack:
        matomo = config.matomo
        sink: MatomoSink | None = None
        if matomo is not None:
            matomo_client = await exit_stack.enter_async_context(
                httpx.AsyncClient(timeout=matomo.timeout, headers={"User-Agent": USER_AGENT})
            )
            mapper = mapper_for(config, matomo, salt, store.title_at)
            sink = MatomoSink.from_config(store, matomo_client, matomo, mapper)
        outputs = make_outputs(config, store, out, sink)
        for output in outputs:
            if isinstance(output, JsonLinesOutput):
                exit_stack.callback(output.close)
                if output.name == "jsonl":
                    _on_sighup(output.reopen, exit_stack)
        for name in store.prepare_cursors([o.name for o in outputs], drop_others=True):
            log.warning("output %s is no longer configured: its cursor is deleted", name)

        def wake_outputs(events: list[Event]) -> None:
            if events:
                for output in outputs:
                    output.notify()

        limits = KeepaliveLimits(store, outputs)
        telemetry = Telemetry(config, store, sessionizer.open_counts, outputs, limits)
        pipeline = Pipeline(
            store,
            sessionizer,
            Stamper(config, salt),
            [wake_outputs, telemetry.on_events],
            limits,
            build_title_tracker(config, store, sessionizer),
        )
        upkeep = Upkeep(store, limits, config.history.keep_days)

        wake = asyncio.Event()
        receiver: ReceiverProcess | None = None
        if config.webhook is not None:
            # The inbox has a file of its own, and the receiver a process of its own with its
            # own connection to it: see inbox.py and webhookprocess.py.
            inbox = Inbox.open(inbox_path(config.state.path))
            exit_stack.callback(inbox.close)
            loop = asyncio.get_running_loop()
            receiver = ReceiverProcess(
                config.webhook,
                [s.name for s in config.sources if s.kind == "icecast"],
                inbox.path,
                lambda: loop.call_soon_threadsafe(wake.set),
            )
            receiver.start()  # first: a taken port stops the start, before any banner
            exit_stack.callback(receiver.stop)
            telemetry.receiver = receiver
            drain_inbox(store, inbox, pipeline)  # notices kept from the previous run

        if config.metrics is not None:
            server = MetricsServer(config.metrics, telemetry)
            await server.start()
            exit_stack.push_async_callback(server.stop)

        for warning in config.warnings():
            log.warning("config: %s", warning)
        log.info(
            "audimeter %s: %d source(s) (%s), %s; state in %s, %d open session(s) resumed",
            __version__,
            len(config.sources),
            ", ".join(f"{s.name} every {s.poll_interval:g} s" for s in config.sources),
            _describe(config),
            config.state.path,
            resumed,
        )

        followers = [
            LogFollower(s, s.access_log, store.log_position(s.name, str(s.access_log)))
            for s in config.sources
            if s.access_log is not None
        ]
        telemetry.followers = followers
        for follower in followers:
            exit_stack.callback(follower.close)
            _follow(follower, pipeline)  # the first read finds where to start

        board = StatusBoard(store, config)
        exit_stack.callback(board.stopped)
        queue: asyncio.Queue[Observation] = asyncio.Queue(maxsize=1)
        tasks = []
        # The restored sessions' starts let a poller tell a clock step from a server restart.
        starts: dict[str, dict[str, int]] = {}
        for session in sessionizer.sessions():
            if session.instance == sessionizer.instance_of(session.source):
                starts.setdefault(session.source, {})[session.client_id] = session.started_at
        for source in config.sources:
            client = await exit_stack.enter_async_context(source_client(source))
            instance = sessionizer.instance_of(source.name)
            poller = make_poller(source, client, instance, starts.get(source.name))
            tasks.append(asyncio.create_task(_poll_forever(poller, queue, board, telemetry)))
        tasks.extend(asyncio.create_task(output.run()) for output in outputs)
        heartbeat = _heartbeat(telemetry, exit_stack)
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getting = asyncio.create_task(queue.get())
                waking = asyncio.create_task(wake.wait())
                await asyncio.wait(
                    {getting, stopping, waking}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                waking.cancel()
                wake.clear()
                # Notices first: Icecast asks the receiver before it admits a listener, so a
                # listing that shows the listener comes after its notice (and its query string).
                if receiver is not None:
                    receiver.check()
                    drain_inbox(store, inbox, pipeline)
                if getting.done():
                    pipeline.feed([getting.result()])
                else:
                    getting.cancel()
                for follower in followers:
                    _follow(follower, pipeline)
                pipeline.feed([Tick(int(time.time()))])
                upkeep()
                board.beat()
                telemetry.beat()
                if heartbeat is not None:
                    heartbeat()
                for task in tasks:
                    if task.done():  # pollers and outputs run forever: an end is a failure
                        task.result()
        finally:
            if heartbeat is not None:
                heartbeat.stopping()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stopping.cancel()
            while not queue.empty():
                pipeline.feed([queue.get_nowait()])
            if receiver is not None:
                receiver.stop()
                drain_inbox(store, inbox, pipeline)
        await asyncio.gather(*(o.drain(SHUTDOWN_DRAIN_SECONDS) for o in outputs))
        log.info(
            "stopped; %d open session(s) kept in %s",
            sum(1 for _ in sessionizer.sessions()),
            config.state.path,
        )


def _describe(config: Config) -> str:
    parts = []
    if config.matomo is not None:
        parts.append(f"Matomo site {config.matomo.site_id} at {config.matomo.url}")
    if config.jsonl is not None:
        parts.append(f"JSON lines to {'stdout' if config.jsonl.path == '-' else config.jsonl.path}")
    return ", ".join(parts) or "events to stdout"


def _heartbeat(telemetry: Telemetry, exit_stack: contextlib.AsyncExitStack) -> Heartbeat | None:
    """systemd's READY, WATCHDOG and STATUS, when started by it as a Type=notify unit."""
    notifier = Notifier.from_environment()
    if notifier is None:
        return None
    exit_stack.callback(notifier.close)

    def status() -> str:
        up = sum(1 for watch in telemetry.watches.values() if watch.up)
        return (
            f"{up}/{len(telemetry.watches)} source(s) answering, "
            f"{telemetry.listeners()} listener(s), "
            f"{sum(telemetry.pending().values())} event(s) pending delivery"
        )

    return Heartbeat(notifier, lambda: telemetry.first_round_done, status)


def _on_sighup(callback: Callable[[], None], exit_stack: contextlib.AsyncExitStack) -> None:
    """Call `callback` on SIGHUP (logrotate), where this loop can take signals."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, callback)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
        return
    exit_stack.callback(loop.remove_signal_handler, signal.SIGHUP)
