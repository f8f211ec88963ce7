"""What `audimeter run` tells about itself: Prometheus metrics and the health verdict.

Fed one way by the runner: the pipeline's events (`on_events`), each poll's outcome
(`SourceWatch.polled`) and the main loop's rounds (`beat`). Nothing in the sources or the
sessionizer knows of it. Counters the daemon keeps anyway (sink statistics, dropped
keep-alives, webhook and access-log counts) and gauges (listeners, backlog) are read only when
scraped, by a custom collector: a scrape costs a few look-ups per mount and output, never work
per listener. No listener address or user agent becomes a label: labels are source, mount,
reason, kind and output, all bounded by the configuration and the servers' mounts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from audimeter import __version__
from audimeter.config import Config
from audimeter.events import Event, SessionEnded, SessionStarted
from audimeter.health import OutputHealth, SourceHealth, Verdict, assess
from audimeter.matomo.sink import MatomoSink
from audimeter.outputs.base import KeepaliveLimits, Output
from audimeter.outputs.jsonl import JsonLinesOutput
from audimeter.sources import ERROR_KINDS, SourceError
from audimeter.sources.logfollower import LogFollower
from audimeter.store import Store
from audimeter.webhookprocess import ReceiverProcess

SESSION_BUCKETS = (10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
"""Seconds: the report's duration buckets (1, 5, 10, 30 minutes, 1 and 2 hours) and some more."""
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Counts = Callable[[], Mapping[tuple[str, str], int]]


class SourceWatch:
    """One source's polls: when it last answered, its problem while failing, how many rounds."""

    def __init__(self, name: str, grace: float, since: float) -> None:
        self.name = name
        self.grace = grace
        self.since = since
        self.last_ok: float | None = None
        self.problem: str | None = None
        self.rounds = 0

    @property
    def up(self) -> bool:
        return self.rounds > 0 and self.problem is None

    def health(self) -> SourceHealth:
        return SourceHealth(self.name, self.grace, self.since, self.last_ok, self.problem)


class ListeningClock:
    """Integrates the open sessions per mount over time: listening seconds that grow while
    they are listened, so that `rate()` is the listeners and `increase()` the listening time.

    The open-session counts only change when the pipeline commits a step, which calls
    `advance`: between two steps each mount's count is constant, so the integral is exact for
    the counts the gauge shows (a session counts from its first sighting to its end's poll).
    """

    def __init__(self, counts: Counts, clock: Callable[[], float] = time.monotonic) -> None:
        self._counts = counts
        self._clock = clock
        self._at = clock()
        self.current: dict[tuple[str, str], int] = dict(counts())
        self._seconds: dict[tuple[str, str], float] = {}

    def advance(self) -> None:
        """Add the time since the last step at the counts held so far; take the new counts."""
        now = self._clock()
        elapsed = now - self._at
        seconds = self._seconds
        for key, count in self.current.items():
            seconds[key] = seconds.get(key, 0.0) + count * elapsed
        self._at = now
        self.current = dict(self._counts())

    def seconds(self) -> dict[tuple[str, str], float]:
        """Listening seconds per (source, mount) until now (every mount ever open)."""
        elapsed = self._clock() - self._at
        totals = dict(self._seconds)
        for key, count in self.current.items():
            totals[key] = totals.get(key, 0.0) + count * elapsed
        return totals


class Telemetry:
    """The daemon's metrics registry (private, no process-wide default) and health."""

    def __init__(
        self,
        config: Config,
        store: Store,
        counts: Counts,
        outputs: Sequence[Output],
        limits: KeepaliveLimits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._outputs = list(outputs)
        self._limits = limits
        self._clock = clock
        started = clock()
        self.watches = {
            s.name: SourceWatch(s.name, s.outage_grace, started) for s in config.sources
        }
        self.receiver: ReceiverProcess | None = None
        self.followers: list[LogFollower] = []
        self.loop_beat: float | None = None
        self.listening = ListeningClock(counts)
        self.registry = CollectorRegistry(auto_describe=False)
        self._started = Counter(
            "audimeter_sessions_started",
            "Listening sessions started (counted, after min_session)",
            ["source", "mount"],
            registry=self.registry,
        )
        self._ended = Counter(
            "audimeter_sessions_ended",
            "Listening sessions ended, by reason",
            ["source", "mount", "reason"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "audimeter_session_duration_seconds",
            "Length of the sessions that ended",
            ["source"],
            buckets=SESSION_BUCKETS,
            registry=self.registry,
        )
        self._poll_seconds = Histogram(
            "audimeter_poll_duration_seconds",
            "Time one poll of a source took, failed ones included",
            ["source"],
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self._poll_errors = Counter(
            "audimeter_poll_errors",
            "Polls that failed, by kind of failure",
            ["source", "kind"],
            registry=self.registry,
        )
        for name in self.watches:  # every series from the start, so rate() sees the first
            self._poll_seconds.labels(name)
            for kind in ERROR_KINDS:
                self._poll_errors.labels(name, kind)
        self.registry.register(_Collector(self))

    # -- fed by the runner ----------------------------------------------------------------------

    def on_events(self, events: list[Event]) -> None:
        """A pipeline step was committed: count its starts and ends, advance listening time."""
        self.listening.advance()
        for event in events:
            if isinstance(event, SessionStarted):
                session = event.session
                self._started.labels(session.source, session.mount).inc()
            elif isinstance(event, SessionEnded):
                session = event.session
                self._ended.labels(session.source, session.mount, event.reason.value).inc()
                self._duration.labels(session.source).observe(event.duration)

    def polled(self, source: str, seconds: float, error: SourceError | None) -> None:
        """One poll of `source` ended, after `seconds`, failing with `error` or not."""
        watch = self.watches[source]
        watch.rounds += 1
        self._poll_seconds.labels(source).observe(seconds)
        if error is None:
            watch.last_ok = self._clock()
            watch.problem = None
        else:
            watch.problem = str(error)
            self._poll_errors.labels(source, error.kind).inc()

    def beat(self) -> None:
        """The main loop ran a round."""
        self.loop_beat = self._clock()

    # -- read when asked ------------------------------------------------------------------------

    @property
    def first_round_done(self) -> bool:
        """Every source has been polled once, successfully or not."""
        return all(watch.rounds for watch in self.watches.values())

    def listeners(self) -> int:
        return sum(self.listening.current.values())

    def pending(self) -> dict[str, int]:
        """An upper bound of the events each output has not taken (cheap)."""
        return {output.name: output.backlog() for output in self._outputs}

    def health(self) -> Verdict:
        outputs = [OutputHealth(o.name, self._store.oldest_pending(o.name)) for o in self._outputs]
        return assess(
            self._clock(),
            loop_beat=self.loop_beat,
            sources=[watch.health() for watch in self.watches.values()],
            outputs=outputs,
            delivery_lag=self._config.health.delivery_lag,
            state_error=state_error(self._config.state.path),
        )

    def delivery(self, output: Output) -> tuple[int, int, int]:
        """Events delivered, failed delivery attempts and dead letters of `output` since start."""
        if isinstance(output, MatomoSink):
            stats = output.stats
            return stats.sent, stats.failures, stats.dead_lettered
        if isinstance(output, JsonLinesOutput):
            return output.written, output.failures, 0
        return 0, 0, 0

    @property
    def outputs(self) -> list[Output]:
        return self._outputs

    @property
    def dropped(self) -> Mapping[str, int]:
        return self._limits.dropped

    def oldest_pending(self, output: str) -> int | None:
        return self._store.oldest_pending(output)


def state_error(path: Path) -> str | None:
    """Why the state file cannot be written, judged by its and its directory's permissions
    (SQLite writes a journal beside it); None when it can."""
    folder = path.parent if str(path.parent) else Path()
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its directory {folder} is not writable"
    return None


class _Collector(Collector):
    """The metrics read at scrape time from what the daemon keeps anyway."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._t = telemetry

    def collect(self) -> Iterator[Metric]:
        t = self._t
        info = GaugeMetricFamily("audimeter_build_info", "audimeter's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

        listeners = GaugeMetricFamily(
            "audimeter_listeners", "Open listening sessions now", labels=["source", "mount"]
        )
        for (source, mount), count in t.listening.current.items():
            listeners.add_metric([source, mount], count)
        yield listeners
        seconds = CounterMetricFamily(
            "audimeter_listening_seconds",
            "Time listened: rate() is the listeners, increase() the listening time",
            labels=["source", "mount"],
        )
        for (source, mount), total in t.listening.seconds().items():
            seconds.add_metric([source, mount], total)
        yield seconds

        up = GaugeMetricFamily(
            "audimeter_source_up", "1 when the source's last poll succeeded", labels=["source"]
        )
        last = GaugeMetricFamily(
            "audimeter_source_last_success_timestamp_seconds",
            "Unix time of the source's last good poll",
            labels=["source"],
        )
        for name, watch in t.watches.items():
            up.add_metric([name], 1 if watch.up else 0)
            if watch.last_ok is not None:
                last.add_metric([name], watch.last_ok)
        yield up
        yield last

        yield from self._outputs()
        yield from self._inputs()

    def _outputs(self) -> Iterator[Metric]:
        t = self._t
        labels = ["output"]
        pending = GaugeMetricFamily(
            "audimeter_output_pending_events",
            "Events not yet delivered (upper bound)",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "audimeter_output_oldest_pending_age_seconds",
            "Age of the oldest undelivered event (0 when none)",
            labels=labels,
        )
        delivered = CounterMetricFamily(
            "audimeter_output_delivered_events", "Events delivered since start", labels=labels
        )
        errors = CounterMetricFamily(
            "audimeter_output_errors", "Failed delivery attempts (each retried)", labels=labels
        )
        dead = CounterMetricFamily(
            "audimeter_output_dead_letters",
            "Events the destination refused, kept in the dead-letter table",
            labels=labels,
        )
        dropped = CounterMetricFamily(
            "audimeter_output_dropped_keepalives",
            "Keep-alives skipped while the output was over its outbox_limit",
            labels=labels,
        )
        now = time.time()
        for output in t.outputs:
            name = [output.name]
            pending.add_metric(name, output.backlog())
            oldest = t.oldest_pending(output.name)
            age.add_metric(name, 0.0 if oldest is None else max(0.0, now - oldest))
            sent, failed, refused = t.delivery(output)
            delivered.add_metric(name, sent)
            errors.add_metric(name, failed)
            dead.add_metric(name, refused)
            dropped.add_metric(name, t.dropped.get(output.name, 0))
        yield from (pending, age, delivered, errors, dead, dropped)

    def _inputs(self) -> Iterator[Metric]:
        t = self._t
        notices = CounterMetricFamily(
            "audimeter_webhook_requests",
            "Icecast URL-authentication requests, by outcome",
            labels=["outcome"],
        )
        if t.receiver is not None:
            counts = t.receiver.counts  # one snapshot: "ignored" is a difference of three
            ignored = counts.received - counts.recorded - counts.failed
            for outcome, count in (
                ("recorded", counts.recorded),
                ("ignored", ignored),
                ("failed", counts.failed),
                ("refused", counts.refused),
            ):
                notices.add_metric([outcome], count)
        yield notices
        lines = CounterMetricFamily(
            "audimeter_access_log_lines",
            "Access-log lines read, by outcome",
            labels=["source", "outcome"],
        )
        for follower in t.followers:
            for outcome, count in follower.lines.items():
                lines.add_metric([follower.source, outcome], count)
        yield lines
