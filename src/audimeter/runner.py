"""`audimeter run`: sources → sessionizer → store → sinks, until told to stop.

Exact ends come from two more inputs, both optional: access logs followed by `LogFollower`, and
Icecast's URL authentication, whose receiver records every notice in the store's inbox before it
answers; the loop turns inbox rows into observations and deletes them with the outcome.

Each source polls on its own schedule, so a slow server never delays another. Their observations
pass one at a time through a single pipeline step that runs the sessionizer and commits what
changed in one transaction before any sink sees it. The hand-over queue holds one observation:
a source parses its next listing only once the previous one has been taken, which bounds memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import httpx

from audimeter import __version__
from audimeter.clients import USER_AGENT, source_client
from audimeter.config import Config
from audimeter.events import Event, SessionKeptAlive
from audimeter.logs import ProblemLog
from audimeter.matomo.mapping import RequestMapper, mapper_for
from audimeter.matomo.sink import MatomoSink
from audimeter.observations import LogPosition, Observation, Tick
from audimeter.policy import ListenerPolicy
from audimeter.privacy import SaltBook
from audimeter.sessionizer import Sessionizer
from audimeter.sinks import JsonLinesSink
from audimeter.sources import Poller, SourceError
from audimeter.sources.factory import make_poller
from audimeter.sources.logfollower import LogFollower
from audimeter.store import Store
from audimeter.webhook import WebhookReceiver, decode

log = logging.getLogger(__name__)

SHUTDOWN_DRAIN_SECONDS = 5.0

EventListener = Callable[[list[Event]], None]


class Pipeline:
    """The synchronous heart: observations in, events committed and handed to the sinks.

    The outbox is bounded: while it holds `outbox_limit` requests (Matomo unreachable for days),
    keep-alives are not queued; starts and ends always are, so every session keeps its true
    start and end, and only the continuity of long visits suffers.
    """

    def __init__(
        self,
        store: Store,
        sessionizer: Sessionizer,
        mapper: RequestMapper | None,
        listeners: Sequence[EventListener] = (),
        outbox_limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._sessionizer = sessionizer
        self._mapper = mapper
        self._listeners = list(listeners)
        self._outbox_limit = outbox_limit
        self._clock = clock
        self.dropped_keepalives = 0
        self._warned_at: float | None = None
        self._stored_instances: dict[str, str] | None = None
        """The server instances last committed: written again only when they change."""

    @property
    def sessionizer(self) -> Sessionizer:
        return self._sessionizer

    def _requests(self, events: Sequence[Event]) -> list[str]:
        if self._mapper is None or not events:
            return []
        wanted: Sequence[Event] = events
        limit = self._outbox_limit
        if limit is not None and self._store.outbox_span() >= limit:
            wanted = [e for e in events if not isinstance(e, SessionKeptAlive)]
            dropped = len(events) - len(wanted)
            self.dropped_keepalives += dropped
            now = self._clock()
            if dropped and (self._warned_at is None or now - self._warned_at >= 3600):
                self._warned_at = now
                log.warning(
                    "matomo: the outbox is full (outbox_limit = %d requests): keep-alives are "
                    "not queued until Matomo takes requests again (%d so far); starts and ends "
                    "still are",
                    limit,
                    self.dropped_keepalives,
                )
        return [self._mapper.query_string(e) for e in wanted]

    def feed(
        self,
        observations: Sequence[Observation],
        *,
        consumed_inbox: Sequence[int] = (),
        log_positions: Sequence[LogPosition] = (),
    ) -> list[Event]:
        """Run the observations through the sessionizer and commit the outcome.

        `consumed_inbox` and `log_positions` say where the observations came from; they are
        committed with the outcome, so that nothing is lost or taken twice after a crash.
        """
        events: list[Event] = []
        for observation in observations:
            events.extend(self._sessionizer.observe(observation))
        changes = self._sessionizer.take_changes()
        quiet = all(isinstance(o, Tick) for o in observations)
        if quiet and not (events or changes or consumed_inbox or log_positions):
            return events
        outbox = self._requests(events)
        instances = self._sessionizer.instances()
        self._store.commit(
            changes,
            self._sessionizer.mount_records(),
            outbox,
            instances=None if instances == self._stored_instances else instances,
            consumed_inbox=consumed_inbox,
            log_positions=log_positions,
        )
        self._stored_instances = instances
        for listener in self._listeners:
            listener(events)
        return events


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


def _follow(follower: LogFollower, pipeline: Pipeline) -> None:
    """Feed what the access log says since the last read, with the position that it reached."""
    read = follower.read()
    if read is not None:
        left, position = read
        pipeline.feed(left, log_positions=[position])


def drain_inbox(store: Store, pipeline: Pipeline, batch: int = 500) -> None:
    """Feed the notices the webhook receiver recorded, deleting them with the outcome."""
    while rows := store.inbox_batch(batch):
        observations: list[Observation] = []
        for _, payload in rows:
            try:
                observations.append(decode(payload))
            except ValueError as exc:
                log.error("webhook: an unreadable notice in the inbox was dropped (%s)", exc)
        pipeline.feed(observations, consumed_inbox=[row_id for row_id, _ in rows])


async def _poll_forever(poller: Poller, queue: asyncio.Queue[Observation]) -> None:
    problems = ProblemLog(log)
    interval = poller.poll_interval
    while True:
        started = time.monotonic()
        try:
            await poller.poll(queue.put)
        except SourceError as exc:
            problems.failed(poller.name, str(exc), "%s (retrying every poll)", exc)
        else:
            problems.succeeded(poller.name, "source %s: answering again", poller.name)
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
    listeners: list[EventListener] = []
    mapper: RequestMapper | None = None
    sink: MatomoSink | None = None
    async with contextlib.AsyncExitStack() as exit_stack:
        matomo = config.matomo
        if matomo is not None:
            mapper = mapper_for(config, matomo, SaltBook.from_config(config, store))
            matomo_client = await exit_stack.enter_async_context(
                httpx.AsyncClient(timeout=matomo.timeout, headers={"User-Agent": USER_AGENT})
            )
            sink = MatomoSink.from_config(store, matomo_client, matomo)
            listeners.append(lambda events: sink.notify() if events else None)
        else:
            listeners.append(JsonLinesSink(out))
        pipeline = Pipeline(
            store, sessionizer, mapper, listeners, matomo.outbox_limit if matomo else None
        )

        wake = asyncio.Event()
        receiver: WebhookReceiver | None = None
        if config.webhook is not None:
            receiver = WebhookReceiver(
                config.webhook,
                [s.name for s in config.sources if s.kind == "icecast"],
                store,
                wake.set,
            )
            await receiver.start()  # first: a taken port stops the start, before any banner
            exit_stack.push_async_callback(receiver.stop)
            drain_inbox(store, pipeline)  # notices kept from the previous run

        for warning in config.warnings():
            log.warning("config: %s", warning)
        log.info(
            "audimeter %s: %d source(s) (%s), %s; state in %s, %d open session(s) resumed",
            __version__,
            len(config.sources),
            ", ".join(f"{s.name} every {s.poll_interval:g} s" for s in config.sources),
            f"Matomo site {matomo.site_id} at {matomo.url}" if matomo else "events to stdout",
            config.state.path,
            resumed,
        )

        followers = [
            LogFollower(s, s.access_log, store.log_position(s.name, str(s.access_log)))
            for s in config.sources
            if s.access_log is not None
        ]
        for follower in followers:
            exit_stack.callback(follower.close)
            _follow(follower, pipeline)  # the first read finds where to start

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
            tasks.append(asyncio.create_task(_poll_forever(poller, queue)))
        if sink is not None:
            tasks.append(asyncio.create_task(sink.run()))
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
                if getting.done():
                    pipeline.feed([getting.result()])
                else:
                    getting.cancel()
                if receiver is not None:
                    drain_inbox(store, pipeline)
                for follower in followers:
                    _follow(follower, pipeline)
                pipeline.feed([Tick(int(time.time()))])
                for task in tasks:
                    if task.done():  # pollers and the sink run forever: an end is a failure
                        task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stopping.cancel()
            while not queue.empty():
                pipeline.feed([queue.get_nowait()])
            if receiver is not None:
                await receiver.stop()
                drain_inbox(store, pipeline)
        if sink is not None:
            await sink.drain(SHUTDOWN_DRAIN_SECONDS)
        log.info(
            "stopped; %d open session(s) kept in %s",
            sum(1 for _ in sessionizer.sessions()),
            config.state.path,
        )
