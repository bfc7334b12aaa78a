"""``/metrics`` in Prometheus text format.

Two parts. Per-process figures (HTTP requests by route and status, their latency, and the
figures of ``handlers.metrics``: clients, subscriptions, events, ack and fan-out latency, bus,
Redis errors, jobs) are prometheus-client metrics in the process's ``Metrics`` registry; with
``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts, as prometheus-client requires)
every ``serve`` and ``worker`` process writes them to that folder and a scrape of any one
process sums all of them (live gauges over the processes still running). Store-wide figures
(sessions by kind, orphans, bytes, job queue, alerts, nodes) are read from the admin counters
in Redis at scrape time: every node answers the same, so they are gauges without a process
label.
"""

from __future__ import annotations

import importlib.metadata
import asyncio
import os
import platform
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from handlers.admin.access import admin_claims
from handlers.admin.alerts import ALERT_NAMES, Alerts
from handlers.admin.config import AdminConfig
from handlers.admin.requests import NoFields, parse_query
from handlers.context import Services
from handlers.http_common import FRONT_HOOKS, FrontAnswer, guarded, route_label
from handlers.metrics import MULTIPROC_ENV, forget_dead_processes
from storage.admin.repository import AdminStore
from storage.failures import REDIS_AWAY


class _Snapshot:
    """A collector that yields families computed beforehand (collectors are synchronous)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class PrometheusRoutes:
    """The ``/metrics`` route and the middleware that counts HTTP requests."""

    def __init__(self, services: Services, *, store: AdminStore, config: AdminConfig, alerts: Alerts) -> None:
        self._s = services
        self._store = store
        self._config = config
        self._alerts = alerts
        self.registry = services.metrics.registry
        self.requests = Counter(
            "sessionhub_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sessionhub_http_request_seconds", "HTTP request handling time by route", ["route"], registry=self.registry
        )

    def register(self, app: web.Application) -> None:
        """Attach ``/metrics`` and the request-counting middleware to ``app``."""
        app.middlewares.append(self._count)
        app.setdefault(FRONT_HOOKS, []).append(self._count_front_answer)
        app.router.add_get("/metrics", guarded(self.metrics))

    def _count_front_answer(self, answer: FrontAnswer) -> None:
        # What _count records for a request that aiohttp never saw (a WebSocket open answered by
        # server.transport.front, a fixed answer such as /healthz by server.transport.accept).
        self.requests.labels(answer.path, "GET", str(answer.status)).inc()
        if answer.status != 101:  # a WebSocket lives for minutes: not a latency (as in _count)
            self.latency.labels(answer.path).observe(answer.seconds)

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        route = route_label(request)
        started = time.perf_counter()
        status = 500
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.requests.labels(route, request.method, str(status)).inc()
            if not route.startswith("/socket.io"):  # a WebSocket lives for minutes: not a latency
                self.latency.labels(route).observe(time.perf_counter() - started)

    async def metrics(self, request: web.Request) -> web.Response:
        """Every figure in the Prometheus text exposition format."""
        if not self._config.metrics_public:
            await admin_claims(request, self._s)
        parse_query(NoFields, request.query)
        if os.environ.get(MULTIPROC_ENV):
            # Every process's files read and summed: ~190 ms of the event loop with the files of
            # 1,000 processes started since the folder was emptied (audit "retention"), so in a
            # thread, as a file is read.
            process_part = await asyncio.to_thread(lambda: generate_latest(self._process_registry()))
        else:
            process_part = generate_latest(self._process_registry())
        store_registry = CollectorRegistry()
        store_registry.register(_Snapshot(await self._store_families()))
        body = process_part + generate_latest(store_registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _process_registry(self) -> CollectorRegistry:
        folder = os.environ.get(MULTIPROC_ENV)
        if not folder:
            return self.registry
        # Every process's files in the folder, summed: the figures of the whole deployment.
        forget_dead_processes(folder)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)
        ProcessCollector(registry=registry)  # the scraped process's own (the others' are not in the files)
        PlatformCollector(registry=registry)
        return registry

    async def _store_families(self) -> list[Metric]:
        try:
            families = await self._counted_families()
        except REDIS_AWAY:
            # Redis away: the scrape still answers, with what needs no Redis and the alert that
            # says so (it failed with 503, and the scraper saw only a failed target).
            families = [_build_info()]
        return [*families, _alerts_family(await self._alerts.check())]

    async def _counted_families(self) -> list[Metric]:
        counts = await self._store.counts(self._s.kinds.names())
        families: list[Metric] = [_build_info()]
        for name, field, text in (
            ("sessionhub_sessions", "sessions", "Sessions stored, by kind"),
            ("sessionhub_sessions_active", "active", "Sessions accessed in the last 24 hours, by kind"),
            ("sessionhub_sessions_orphaned", "orphaned", "Sessions not accessed for the orphan threshold, by kind"),
            ("sessionhub_storage_bytes", "storage_bytes", "Bytes Redis holds for the sessions, by kind"),
            ("sessionhub_file_bytes", "file_bytes", "Bytes of the sessions' audio files (disk or S3), by kind"),
        ):
            family = GaugeMetricFamily(name, text, labels=["kind"])
            for kind, figures in counts.items():
                if kind != "*":
                    family.add_metric([kind], figures[field])
            families.append(family)
        jobs = GaugeMetricFamily("sessionhub_jobs", "Post-processing jobs by state", labels=["state"])
        for state, value in (await self._s.jobs.counts()).items():
            jobs.add_metric([state], value)
        families.append(jobs)
        return families


def _alerts_family(raised: list[dict[str, Any]]) -> Metric:
    """``sessionhub_alerts{alert}``: 1 for each alert raised now, 0 for the others.

    1 however many times it is raised (``bus_down`` once per node down): a rule written as
    ``== 1`` stopped firing when a second node died."""
    alerts = GaugeMetricFamily("sessionhub_alerts", "Alerts raised now (1) or not (0), by alert", labels=["alert"])
    names = {a["alert"] for a in raised}
    for alert in ALERT_NAMES:
        alerts.add_metric([alert], 1 if alert in names else 0)
    return alerts


def _build_info() -> Metric:
    """``sessionhub_build_info{version, python}`` 1: which code answers the scrape."""
    try:
        version = importlib.metadata.version("sessionhub")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    info = GaugeMetricFamily(
        "sessionhub_build_info", "The sessionhub version and Python answering", labels=["version", "python"]
    )
    info.add_metric([version, platform.python_version()], 1)
    return info
