"""The `[metrics]` HTTP server: `/metrics` for Prometheus and `/healthz` for probes.

It runs on the daemon's own event loop, beside the main loop, so it reads the telemetry
without locks; a scrape costs what the collectors cost (a few look-ups, see `telemetry`).
A process whose loop is blocked does not answer at all: a probe's timeout is the signal then.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from audimeter.config import MetricsConfig
from audimeter.telemetry import Telemetry
from audimeter.webhook import bind_failure

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)


_FOLLOW = "point Prometheus's scrape target there"


class MetricsServerError(Exception):
    """The metrics server cannot listen; the message says where and why."""


class MetricsServer:
    def __init__(self, config: MetricsConfig, telemetry: Telemetry) -> None:
        self._config = config
        self._telemetry = telemetry
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._cost = _ScrapeCost()
        telemetry.registry.register(self._cost)

    async def start(self) -> None:
        # aiohttp only when the server starts: it takes some 12 MB of a daemon without one.
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._config.host, self._config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = bind_failure(exc, "metrics", _FOLLOW)
            raise MetricsServerError(
                f"metrics: cannot listen on {self._config.listen}: {reason}"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("metrics: /metrics and /healthz on %s", self._config.listen)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        started = time.thread_time()
        body = generate_latest(self._telemetry.registry)
        self._cost.scrapes += 1
        self._cost.seconds += time.thread_time() - started
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        verdict = self._telemetry.health()
        if verdict.healthy:
            return web.json_response({"status": "ok"})
        body = {"status": "unhealthy", "problems": list(verdict.problems)}
        return web.Response(status=503, text=json.dumps(body), content_type="application/json")


class _ScrapeCost(Collector):
    """What answering /metrics costs: the CPU time of collecting and rendering, on the loop's
    thread (the HTTP exchange around it not included)."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.seconds = 0.0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "audimeter_metrics_scrapes", "Answers to /metrics before this one", value=self.scrapes
        )
        yield CounterMetricFamily(
            "audimeter_metrics_scrape_cpu_seconds",
            "CPU time spent collecting and rendering those answers",
            value=self.seconds,
        )
