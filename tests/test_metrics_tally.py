"""The per-event figures are tallied in plain numbers and added at collect time (issue 26):
a scrape shows exactly what one prometheus-client call per event shows."""

from __future__ import annotations

import math
import os
import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from handlers.metrics import LATENCY_BUCKETS_S, MULTIPROC_ENV, Metrics, tally_contract_holds
from tests.helpers import Client, ServerUnderTest
from tests.test_metrics import scrape, value

FAMILIES = (
    "sessionhub_socket_events",
    "sessionhub_ack_seconds",
    "sessionhub_fanout_seconds",
    "sessionhub_socket_messages_sent",
    "sessionhub_socket_bytes_sent",
)


class Reference:
    """The same figures as prometheus-client objects called once per event (the old way)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events = Counter(
            "sessionhub_socket_events", "Socket.IO events handled, by event and outcome (ok or error code)",
            ["event", "outcome"], registry=r,
        )  # fmt: skip
        self.ack_seconds = Histogram(
            "sessionhub_ack_seconds", "Socket.IO event handling time, from the handler's start to its ack",
            ["event"], buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.fanout_seconds = Histogram(
            "sessionhub_fanout_seconds",
            "From an event's creation (its ts) to the local fan-out round that wrote it, one per round",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.messages_sent = Counter(
            "sessionhub_socket_messages_sent", "Socket.IO messages written to clients (events, acks)", registry=r
        )
        self.bytes_sent = Counter(
            "sessionhub_socket_bytes_sent", "Bytes of the Socket.IO messages written to clients (WebSocket frames)",
            registry=r,
        )  # fmt: skip


def exposed(registry: CollectorRegistry) -> list[str]:
    """The lines of the per-event families in the text format, without their creation times."""
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if any(name in line for name in FAMILIES) and "_created" not in line]


def feed(metrics: Metrics, reference: Reference, rng: random.Random, count: int) -> None:
    """``count`` events with awkward times: bucket bounds exactly, beyond the last, zero, NaN."""
    awkward = [*LATENCY_BUCKETS_S, 0.0, 11.0, 1e-9, math.inf]
    for n in range(count):
        name = ("set_session_status", "subscribe_on_session")[n % 2]
        outcome = ("ok", "ok", "forbidden", "invalid_state")[n % 4]
        elapsed = awkward[n % len(awkward)] if n % 3 == 0 else rng.random() * rng.choice((0.01, 0.3, 20.0))
        metrics.event(name).done(outcome, elapsed)
        reference.events.labels(name, outcome).inc()
        reference.ack_seconds.labels(name).observe(elapsed)
        size = rng.randrange(20, 4000)
        metrics.sent(1, size)
        reference.messages_sent.inc(1)
        reference.bytes_sent.inc(size)
        if n % 5 == 0:
            lag = math.nan if n % 50 == 0 else rng.random() * 0.05
            metrics.fanout_seconds.observe(lag)
            reference.fanout_seconds.observe(lag)


def test_a_scrape_shows_what_one_call_per_event_shows() -> None:
    metrics, reference = Metrics(), Reference()
    assert metrics.tallied  # no multiprocess folder in this process
    rng = random.Random(26)
    feed(metrics, reference, rng, 3_000)
    first = exposed(metrics.registry)
    assert first == exposed(reference.registry)
    assert any('sessionhub_ack_seconds_bucket{event="set_session_status",le="0.0005"}' in line for line in first)
    # Again after more events: what was added at the first collect is not added twice.
    feed(metrics, reference, rng, 1_001)
    assert exposed(metrics.registry) == exposed(reference.registry)
    assert exposed(metrics.registry) == exposed(reference.registry)  # a collect with nothing new changes nothing
    assert metrics.registry.get_sample_value(
        "sessionhub_socket_events_total", {"event": "set_session_status", "outcome": "ok"}
    ) == reference.registry.get_sample_value(
        "sessionhub_socket_events_total", {"event": "set_session_status", "outcome": "ok"}
    )


def test_an_event_costs_no_prometheus_client_call_until_a_collect() -> None:
    """The hot path writes plain numbers: the metric holds nothing new until it is collected."""
    metrics = Metrics()
    meter = metrics.event("set_session_status")
    for _ in range(10):
        meter.done("ok", 0.002)
        metrics.sent(1, 100)
        metrics.fanout_seconds.observe(0.001)
    child = metrics.events.labels("set_session_status", "ok")
    assert child._value.get() == 0 and metrics.messages_sent._value.get() == 0
    assert (
        metrics.registry.get_sample_value(
            "sessionhub_socket_events_total", {"event": "set_session_status", "outcome": "ok"}
        )
        == 10
    )
    assert child._value.get() == 10
    assert metrics.registry.get_sample_value("sessionhub_socket_bytes_sent_total") == 1000
    assert metrics.registry.get_sample_value("sessionhub_fanout_seconds_count") == 10


async def test_a_served_scrape_counts_every_event_exactly(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    recorder = await server.subscriber(clients, session_id)
    watcher = await server.subscriber(clients, session_id)
    before = await scrape(server)
    statuses = ("recording", "paused") * 10
    for status in statuses:
        ack = await recorder.call("set_session_status", {"session_id": session_id, "status": status})
        assert ack["ok"] is True, ack
    for member in (recorder, watcher):
        await member.wait_for(lambda m=member: len(m.offsets(session_id)) == len(statuses))
    after = await scrape(server)
    event = {"event": "set_session_status"}
    assert value(after, "sessionhub_socket_events_total", outcome="ok", **event) == len(statuses)
    assert value(after, "sessionhub_ack_seconds_count", **event) == len(statuses)
    assert value(after, "sessionhub_ack_seconds_bucket", le="+Inf", **event) == len(statuses)
    assert 0 < value(after, "sessionhub_ack_seconds_sum", **event) < 5 * len(statuses)
    sent = "sessionhub_socket_messages_sent_total"
    # one ack per change and each change to both members (the scrape's own answer is HTTP)
    assert value(after, sent) - value(before, sent) == len(statuses) * 3
    rounds = value(after, "sessionhub_fanout_seconds_count") - value(before, "sessionhub_fanout_seconds_count")
    assert 1 <= rounds <= len(statuses)


def test_the_installed_prometheus_client_has_what_a_tally_writes() -> None:
    """The tally's private parts of prometheus-client (handlers.metrics docstring) are there on the
    installed version; without them the process counts each event the stock way instead."""
    assert tally_contract_holds()
    assert Metrics().tallied == (not os.environ.get(MULTIPROC_ENV))
