"""The running process's Prometheus figures: clients, subscriptions, events, latencies, bus, jobs.

One :class:`Metrics` per process, built by ``server.services`` and carried by ``Services``; each
hook sits where its figure is decided (the socket router, the bus, the worker, the error
mapping), and ``/metrics`` (``handlers.admin.prom``) serves :attr:`Metrics.registry`.

With ``PROMETHEUS_MULTIPROC_DIR`` set before the process starts, prometheus-client writes
every value to a file of that folder and a scrape of any process sums them: counters and
histograms over every process that ever ran, gauges (``livesum``) over the live ones only,
which is why a stopping process calls :meth:`Metrics.close`, and why a scrape first drops the
live gauges of processes that are gone without it (killed, crashed: :func:`forget_dead_processes`;
the folder belongs to the processes of one host, as prometheus-client requires).

Label values come from bounded sets only: registered event names (anything a client invents is
``unknown``), error codes, redis-py exception classes, job types of the known processors.

The figures counted once per committed event (events by outcome, ack time, messages and bytes
sent, the fan-out round's latency) cost a prometheus-client call each, a lock and a few
attribute lookups: several µs per event together, on the one loop that serves every
connection. Without the multiprocess folder they are tallied in plain numbers (a
:class:`CounterTally`, a :class:`HistogramTally`) and added to their metric when the registry
collects it (a scrape), so a scrape shows exactly what one call per event would have shown:
counts are whole numbers, and a histogram's sum is added up in the same order and then set.
With the folder every process's values must be in its files when any process is scraped, so
each call goes to prometheus-client at once, as before.

prometheus-client has no bulk observe, so a histogram's tally relies on three private parts of
a label child (STYLE.md item 12): ``_upper_bounds`` (the bucket bounds, ``+Inf`` last),
``_buckets`` (one value per bound with ``inc``) and ``_sum`` (a value with ``set``).
:func:`tally_contract_holds` checks them on a real child at start: an installed version
without them gets the stock path (one call per event), and tests/test_metrics_tally.py
compares a tallied scrape with a stock one.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import mark_process_dead
from redis.exceptions import RedisError

from handlers.disk_room import DISK_FULL, RESERVE

# The things the storage guard refuses (handlers.storage_guard callers), and the causes of an
# audio upload refused for disk room (handlers.disk_room): each label shows at 0 from the start.
STORAGE_GUARD_WHATS = ("pattern_create", "pattern_remix", "pattern_publish", "stream_create", "voice_create", "guest")
DISK_REFUSAL_CAUSES = (RESERVE, DISK_FULL)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The label of every event name that no handler registered (a client may send any name).
UNKNOWN = "unknown"
OK = "ok"
# The outcome of a handler cancelled before it answered (a stopping server, a lost connection).
CANCELLED = "cancelled"
# Why an admitted client went away: python-socketio's disconnect reasons, and the slow-client
# cut of server.transport.fastpath (which it would report as a transport close), and the flood
# cut of handlers.socket_router (which it would report as a server disconnect).
CLOSE_REASONS = frozenset(
    {"client disconnect", "server disconnect", "ping timeout", "transport close", "transport error", "slow client",
     "flood"}
)  # fmt: skip
# Acks take a few ms, a fan-out round up to seconds under load: buckets cover both ends.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def tally_contract_holds() -> bool:
    """True when prometheus-client's histogram children have the private parts a tally writes."""
    try:
        child: Any = Histogram("sessionhub_probe", "probe", registry=None, buckets=(1.0,))
        bounds, buckets, total = child._upper_bounds, child._buckets, child._sum
        return (
            list(bounds) == [1.0, float("inf")]
            and len(buckets) == len(bounds)
            and all(callable(getattr(b, "inc", None)) for b in buckets)
            and callable(getattr(total, "set", None))
        )
    except (AttributeError, TypeError, ValueError):
        return False


class Observer(Protocol):
    """What the fan-out calls once per round (a histogram, or its tally)."""

    def observe(self, amount: float) -> None: ...


class TalliedCounter(Counter):
    """A counter that first adds its tallies (``before_collect``, set on the parent) when collected."""

    before_collect: Callable[[], None] | None = None

    def collect(self) -> Iterable[Metric]:
        if self.before_collect is not None:
            self.before_collect()
        return super().collect()


class TalliedHistogram(Histogram):
    """A histogram that first adds its tallies (``before_collect``, set on the parent) when collected."""

    before_collect: Callable[[], None] | None = None

    def collect(self) -> Iterable[Metric]:
        if self.before_collect is not None:
            self.before_collect()
        return super().collect()


class CounterTally:
    """Increments of one counter (a label child) held as a plain int until the next collect."""

    __slots__ = ("_child", "pending")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.pending = 0

    def inc(self, amount: int = 1) -> None:
        """What ``Counter.inc`` does, for whole amounts, without its lock and checks."""
        self.pending += amount

    def flush(self) -> None:
        """Add what was tallied to the counter (whole numbers: one inc equals the many)."""
        if self.pending:
            self._child.inc(self.pending)
            self.pending = 0


class HistogramTally:
    """Observations of one histogram (a label child) held as plain numbers until the next collect.

    A bucket is found as prometheus-client finds it (the first upper bound >= the amount, none
    for NaN), and the sum is added up observation by observation from the child's start, as
    prometheus-client adds it, then set: the scraped sum is the very float one call each gave.
    Only the tally writes the child (it is made per process, never in multiprocess mode).
    """

    __slots__ = ("_bounds", "_child", "_counts", "_dirty", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child: Any = child  # its _buckets and _sum: prometheus-client has no bulk observe
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._dirty = False

    def observe(self, amount: float) -> None:
        """What ``Histogram.observe`` records, without its lock, checks and bucket loop."""
        self._sum += amount
        self._dirty = True
        if amount == amount:  # NaN falls in no bucket, as in prometheus-client
            self._counts[bisect_left(self._bounds, amount)] += 1

    def flush(self) -> None:
        """Add the tallied observations to the histogram."""
        if not self._dirty:
            return
        self._dirty = False
        buckets = self._child._buckets
        counts = self._counts
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)
                counts[index] = 0
        self._child._sum.set(self._sum)


@dataclass(slots=True)
class EventMeter:
    """The figures of one event name, label children bound once (``labels()`` costs a few µs)."""

    metrics: Metrics
    name: str
    outcomes: dict[str, Counter] = field(default_factory=dict)
    ack: Histogram | None = None
    # Without the multiprocess folder: the tallies of the same children (see the module doc).
    outcome_tallies: dict[str, CounterTally] = field(default_factory=dict)
    ack_tally: HistogramTally | None = None

    def done(self, outcome: str, elapsed_s: float) -> None:
        """Count one handled event with its outcome (``ok`` or an error code) and its ack time."""
        if self.metrics.tallied:
            tally = self.outcome_tallies.get(outcome)
            if tally is None:  # error codes are one enum: this dict stays small
                tally = self.outcome_tallies[outcome] = self.metrics.counter_tally(
                    self.metrics.events.labels(self.name, outcome)
                )
            tally.pending += 1
            ack_tally = self.ack_tally
            if ack_tally is None:
                ack_tally = self.ack_tally = self.metrics.histogram_tally(self.metrics.ack_seconds.labels(self.name))
            ack_tally.observe(elapsed_s)
            return
        counter = self.outcomes.get(outcome)
        if counter is None:
            counter = self.outcomes[outcome] = self.metrics.events.labels(self.name, outcome)
        counter.inc()
        if self.ack is None:
            self.ack = self.metrics.ack_seconds.labels(self.name)
        self.ack.observe(elapsed_s)


class Metrics:
    """Every figure this process updates while it runs (one object per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Per-event figures tallied in plain numbers, unless every process writes the folder.
        self.tallied = not os.environ.get(MULTIPROC_ENV) and tally_contract_holds()
        self._tallies: list[CounterTally | HistogramTally] = []
        # process_* (CPU, memory, open files) and python_info, as the default registry has them.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.clients = Gauge(
            "sessionhub_connected_clients", "Connected Socket.IO clients", registry=r, multiprocess_mode="livesum"
        )
        self.subscriptions = Gauge(
            "sessionhub_subscriptions",
            "Subscriptions of connected clients to sessions",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.events = TalliedCounter(
            "sessionhub_socket_events",
            "Socket.IO events handled, by event and outcome (ok or error code)",
            ["event", "outcome"],
            registry=r,
        )
        self.ack_seconds = TalliedHistogram(
            "sessionhub_ack_seconds",
            "Socket.IO event handling time, from the handler's start to its ack",
            ["event"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.fanout_histogram = TalliedHistogram(
            "sessionhub_fanout_seconds",
            "From an event's creation (its ts) to the local fan-out round that wrote it, one per round",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.bus_reconnects = Counter("sessionhub_bus_reconnects", "Times the bus's pub/sub link came back", registry=r)
        self.backfilled = Counter(
            "sessionhub_bus_backfilled_events", "Events the bus read from the log to fill a gap", registry=r
        )
        self.history_lost = Counter(
            "sessionhub_history_lost_sessions",
            "Sessions followed by this process whose history Redis lost (emptied, flushed, keys evicted, or"
            " writes a failover discarded): their subscribers were told to resync",
            registry=r,
        )
        self.redis_errors = Counter(
            "sessionhub_redis_errors",
            "Redis failures turned into a wire error or a reconnect, by source and class",
            ["source", "error"],
            registry=r,
        )
        self.jobs_running = Gauge(
            "sessionhub_jobs_running", "Jobs being processed now", registry=r, multiprocess_mode="livesum"
        )
        self.jobs_retried = Counter("sessionhub_jobs_retried", "Failed job attempts scheduled again", registry=r)
        self.jobs_dead = Counter("sessionhub_jobs_dead_lettered", "Jobs moved to the dead-letter list", registry=r)
        self.jobs_dropped = Counter(
            "sessionhub_jobs_dropped", "Jobs dropped unrun because their session was deleted", registry=r
        )
        self.jobs_declined = Counter(
            "sessionhub_jobs_declined",
            "Jobs failed for a person's input (a file too big or gone, a quota used up): said, not dead-lettered",
            registry=r,
        )
        self.opened = Counter("sessionhub_connections_opened", "Socket.IO clients admitted", registry=r)
        self.closed = Counter(
            "sessionhub_connections_closed", "Admitted Socket.IO clients gone away, by reason", ["reason"], registry=r
        )
        self.refusals = Counter(
            "sessionhub_connections_refused",
            "Connections refused (Socket.IO connects, plain HTTP over the per-address cap), by reason",
            ["reason"],
            registry=r,
        )
        self.sessions_created = Counter(
            "sessionhub_sessions_created", "Sessions created by this process, by kind", ["kind"], registry=r
        )
        self.storage_refusals = Counter(
            "sessionhub_storage_guard_refusals",
            "New sessions, remixes, publishes and guest identities refused while Redis memory is over "
            "the storage guard's share of its budget, by what was refused",
            ["what"],
            registry=r,
        )
        self.disk_refusals = Counter(
            "sessionhub_disk_refusals",
            "Audio uploads refused 503 storage_full for want of disk room, by cause: reserve (less free than"
            " SESSIONHUB_VOICE_DISK_RESERVE_BYTES), disk_full (the disk refused the file)",
            ["cause"],
            registry=r,
        )
        # Every known label at 0 from the start: an alert rule on them gets a 0, not "no data"
        # (in multiprocess mode a counter without a sample is not even listed).
        for what in STORAGE_GUARD_WHATS:
            self.storage_refusals.labels(what)
        for cause in DISK_REFUSAL_CAUSES:
            self.disk_refusals.labels(cause)
        self.blob_files_removed = Counter(
            "sessionhub_blob_files_removed",
            "Files the cleanup pass removed from the blob folder, by why: incoming (an upload's "
            "temporary file its killed process left), no_record (a chunk file no chunk names), "
            "no_session (a file of a session that does not exist)",
            ["why"],
            registry=r,
        )
        # Counted per fan-out round (frames x members) and per ack or emit, never per member:
        # the fan-out loop is the hot path.
        self.messages_sent = TalliedCounter(
            "sessionhub_socket_messages_sent", "Socket.IO messages written to clients (events, acks)", registry=r
        )
        self.bytes_sent = TalliedCounter(
            "sessionhub_socket_bytes_sent",
            "Bytes of the Socket.IO messages written to clients (WebSocket frames)",
            registry=r,
        )
        for hooked in (self.events, self.ack_seconds, self.fanout_histogram, self.messages_sent, self.bytes_sent):
            hooked.before_collect = self.flush
        # What the fan-out observes once per round (server.bus), and what sent() counts.
        self.fanout_seconds: Observer = self.fanout_histogram
        self._messages: Counter | CounterTally = self.messages_sent
        self._bytes: Counter | CounterTally = self.bytes_sent
        if self.tallied:
            self.fanout_seconds = self.histogram_tally(self.fanout_histogram)
            self._messages = self.counter_tally(self.messages_sent)
            self._bytes = self.counter_tally(self.bytes_sent)
        self._meters: dict[str, EventMeter] = {}
        # Plain counts of this process, for its node heartbeat (a gauge's value is not public API).
        self.clients_now = 0
        self.subscriptions_now = 0
        # ... and of the histories Redis lost: how many, and when last (ms), for the history_lost alert.
        self.history_lost_now = 0
        self.history_lost_at_ms = 0

    def counter_tally(self, child: Counter) -> CounterTally:
        """A tally of ``child`` (a hooked counter or its label child), flushed at every collect."""
        tally = CounterTally(child)
        self._tallies.append(tally)
        return tally

    def histogram_tally(self, child: Histogram) -> HistogramTally:
        """A tally of ``child`` (a hooked histogram or its label child), flushed at every collect."""
        tally = HistogramTally(child)
        self._tallies.append(tally)
        return tally

    def flush(self) -> None:
        """Add every tally to its metric (called when a hooked metric is collected)."""
        for tally in self._tallies:
            tally.flush()

    def event(self, name: str) -> EventMeter:
        """The meter of a registered event name (call at registration, never with a client's name)."""
        meter = self._meters.get(name)
        if meter is None:
            meter = self._meters[name] = EventMeter(self, name)
        return meter

    def unknown_event(self) -> EventMeter:
        """The one meter of every event name no handler registered."""
        return self.event(UNKNOWN)

    def connected(self) -> None:
        """A Socket.IO client was admitted."""
        self.clients_now += 1
        self.clients.inc()
        self.opened.inc()

    def disconnected(self, reason: str = "") -> None:
        """An admitted client went away (``reason``: one of :data:`CLOSE_REASONS`, else ``other``)."""
        self.clients_now -= 1
        self.clients.dec()
        self.closed.labels(reason if reason in CLOSE_REASONS else "other").inc()

    def session_created(self, kind: str) -> None:
        """This process created a session of ``kind`` (a registered kind's name)."""
        self.sessions_created.labels(kind or UNKNOWN).inc()

    def lost_history(self, now_ms: int) -> None:
        """Redis lost the history of a session this process follows (server.bus said so in its log)."""
        self.history_lost.inc()
        self.history_lost_now += 1
        self.history_lost_at_ms = now_ms

    def storage_refused(self, what: str) -> None:
        """The storage guard refused to store something new (``what``: a fixed word of the route)."""
        self.storage_refusals.labels(what).inc()

    def sent(self, messages: int, size: int) -> None:
        """``messages`` Socket.IO messages of ``size`` bytes in all were handed to clients."""
        self._messages.inc(messages)
        self._bytes.inc(size)

    def refused(self, reason: str) -> None:
        """A Socket.IO connect was refused (``reason``: a fixed word, never a client's text)."""
        self.refusals.labels(reason).inc()

    def subscribed(self) -> None:
        """A client joined a session's room."""
        self.subscriptions_now += 1
        self.subscriptions.inc()

    def unsubscribed(self) -> None:
        """A client left a session's room (unsubscribed, failed to join, or disconnected)."""
        self.subscriptions_now -= 1
        self.subscriptions.dec()

    def redis_error(self, source: str, exc: BaseException) -> None:
        """Count ``exc`` when it is a Redis failure (a class of redis-py's, so a bounded label)."""
        if isinstance(exc, RedisError):
            self.redis_errors.labels(source, type(exc).__name__).inc()

    def close(self) -> None:
        """Drop this process's live gauges from the multiprocess folder (the process is stopping)."""
        if os.environ.get(MULTIPROC_ENV):
            mark_process_dead(os.getpid())


def forget_dead_processes(folder: str) -> None:
    """Drop the live gauges that processes no longer running left in ``folder`` (killed, crashed)."""
    for path in Path(folder).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _process_exists(int(pid)):
            mark_process_dead(int(pid), folder)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


METRICS_KEY = web.AppKey("metrics", Metrics)
