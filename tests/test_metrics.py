"""Live figures on /metrics: clients, subscriptions, events, latencies, bus, Redis errors, jobs; event logs."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from handlers.context import Services
from server.logs import JsonFormatter
from storage.jobs import Job
from tests.conftest import start_server
from tests.helpers import OWNER, Client, RedisProcess, ServerUnderTest
from tests.admin.test_http import admin_token
from tests.test_worker import make_worker

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: ServerUnderTest) -> Samples:
    """Every sample of the server's /metrics, by name and labels."""
    return await scrape_url(server.url, admin_token(server))


async def scrape_url(url: str, token: str) -> Samples:
    """Every sample of /metrics at ``url``, by name and labels."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics", headers=headers) as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(probe: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    """Wait (bounded) for ``probe`` to hold: disconnects and reconnects finish on the server's time."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await probe():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def connected(server: ServerUnderTest, clients: list[Client], user: str = "alice") -> Client:
    client = Client(server.url, server.token(user))
    clients.append(client)
    await client.connect()
    return client


async def test_clients_and_subscriptions_are_gauges_that_go_back_down(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    first, second = await server.create_session("alice"), await server.create_session("alice")
    made = [await connected(server, clients) for _ in range(3)]
    for client in made[:2]:
        assert (await client.call("subscribe_on_session", {"session_id": first}))["ok"] is True
    assert (await made[0].call("subscribe_on_session", {"session_id": second}))["ok"] is True
    assert (await made[0].call("subscribe_on_session", {"session_id": second}))["ok"] is True  # again: no double count
    samples = await scrape(server)
    assert value(samples, "sessionhub_connected_clients") == 3
    assert value(samples, "sessionhub_subscriptions") == 3

    assert (await made[1].call("unsubscribe_from_session", {"session_id": first}))["was_subscribed"] is True
    assert (await made[1].call("unsubscribe_from_session", {"session_id": first}))["was_subscribed"] is False
    assert value(await scrape(server), "sessionhub_subscriptions") == 2

    await made[0].close()  # leaves two rooms at once
    await until(lambda: _is(server, clients=2, subscriptions=0))
    for client in made[1:]:
        await client.close()
    await until(lambda: _is(server, clients=0, subscriptions=0))


async def test_a_refused_connection_is_never_counted(
    server: ServerUnderTest, clients: list[Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="handlers.connection_events")
    refused = Client(server.url, "not-a-token")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect()
    client = await connected(server, clients)
    samples = await scrape(server)
    assert value(samples, "sessionhub_connected_clients") == 1
    # ...as a client; it is counted as a refusal, and logged once.
    assert value(samples, "sessionhub_connections_refused_total", reason="unauthorized") == 1
    assert value(samples, "sessionhub_connections_opened_total") == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "handlers.connection_events"]
    assert len(lines) == 1 and "refused a Socket.IO connection: unauthorized" in lines[0]
    await client.close()
    await until(lambda: _closed(server))


async def _closed(server: ServerUnderTest) -> bool:
    samples = await scrape(server)
    return sum(v for (name, _), v in samples.items() if name == "sessionhub_connections_closed_total") == 1


async def _is(server: ServerUnderTest, *, clients: int, subscriptions: int) -> bool:
    samples = await scrape(server)
    figures = (value(samples, "sessionhub_connected_clients"), value(samples, "sessionhub_subscriptions"))
    return figures == (clients, subscriptions)


async def test_events_are_counted_by_name_and_outcome_and_invented_names_stay_unknown(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    alice = await connected(server, clients)
    assert (await alice.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    assert (await alice.call("subscribe_on_session", {"session_id": "not-an-id"}))["error"] == "invalid_session_id"
    assert (await alice.call("subscribe_on_session", [1, 2]))["error"] == "invalid_payload"
    for name in ("made_up_event_1", "made_up_event_2"):
        assert (await alice.call(name, {}))["error"] == "unknown_event"
    samples = await scrape(server)
    events = "sessionhub_socket_events_total"
    assert value(samples, events, event="subscribe_on_session", outcome="ok") == 1
    assert value(samples, events, event="subscribe_on_session", outcome="invalid_session_id") == 1
    assert value(samples, events, event="subscribe_on_session", outcome="invalid_payload") == 1
    assert value(samples, events, event="unknown", outcome="unknown_event") == 2
    assert not [key for key in samples if any("made_up" in v for _, v in key[1])]  # no label of a client's choosing
    assert value(samples, "sessionhub_ack_seconds_count", event="subscribe_on_session") == 3
    assert value(samples, "sessionhub_ack_seconds_bucket", event="subscribe_on_session", le="+Inf") == 3
    assert 0 < value(samples, "sessionhub_ack_seconds_sum", event="subscribe_on_session") < 5


async def test_fan_out_latency_is_observed_once_per_round_not_per_recipient(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    watchers = [await server.subscriber(clients, session_id) for _ in range(3)]
    ack = await watchers[0].call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert ack["ok"] is True
    for watcher in watchers:
        await watcher.wait_for(lambda w=watcher: w.offsets(session_id) == [2])
    samples = await scrape(server)
    assert value(samples, "sessionhub_fanout_seconds_count") == 1
    assert 0 <= value(samples, "sessionhub_fanout_seconds_sum") < 5
    assert value(samples, "sessionhub_ack_seconds_count", event="set_session_status") == 1


async def test_a_bus_reconnect_and_its_backfill_are_counted(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    before = await scrape(server)
    assert value(before, "sessionhub_bus_reconnects_total") == 0
    assert await redis.client_kill_filter(_type="pubsub") >= 1
    # Written while the link is down: they reach the watcher from the log, not from pub/sub.
    await server.services.voice.set_status(session_id, "recording", OWNER)
    await server.services.voice.set_status(session_id, "paused", OWNER)
    await watcher.wait_for(lambda: watcher.offsets(session_id) == [2, 3], timeout=10)
    samples = await scrape(server)
    assert value(samples, "sessionhub_bus_reconnects_total") == 1
    assert value(samples, "sessionhub_bus_backfilled_events_total") == 2
    assert value(samples, "sessionhub_redis_errors_total", source="bus", error="ConnectionError") >= 1


async def test_redis_errors_are_counted_where_they_become_wire_errors(tmp_path: Path, clients: list[Client]) -> None:
    own = RedisProcess(tmp_path / "redis")
    own.start()
    srv = await start_server(own.url, tmp_path / "srv")
    try:
        session_id = await srv.create_session("alice")
        client = await connected(srv, clients)
        own.stop()
        ack = await client.call("subscribe_on_session", {"session_id": session_id})
        assert ack["error"] == "unavailable"
        headers = {"Authorization": f"Bearer {srv.token('alice')}"}
        async with aiohttp.ClientSession() as http, http.get(f"{srv.url}/voicebot/sessions", headers=headers) as r:
            assert r.status == 503
        # /metrics itself reads the store: with Redis down the process's own registry is what is left.
        registry = srv.services.metrics.registry

        def errors(source: str) -> float:
            labels = {"source": source, "error": "ConnectionError"}
            return registry.get_sample_value("sessionhub_redis_errors_total", labels) or 0.0

        assert (errors("socket"), errors("http")) == (1, 1)

        async def bus_noticed() -> bool:
            return errors("bus") >= 1

        await until(bus_noticed)
        assert (
            registry.get_sample_value(
                "sessionhub_socket_events_total", {"event": "subscribe_on_session", "outcome": "unavailable"}
            )
            == 1
        )
    finally:
        own.start()  # a server stops promptly with its Redis back
        await srv.stop()
        own.stop()


async def test_job_figures_running_retried_and_dead(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    registry = server.services.metrics.registry
    running_seen: list[float | None] = []

    async def flaky(ctx: Services, job: Job) -> dict[str, Any]:
        running_seen.append(registry.get_sample_value("sessionhub_jobs_running"))
        raise RuntimeError("boom")

    await server.services.jobs.enqueue(Job(type="FLAKY", session_id=session_id, performer_id="alice"))
    worker = make_worker(server, {"FLAKY": flaky}, max_attempts=3, backoff_base_ms=1)
    await server.services.jobs.ensure_group()
    for _ in range(200):
        await worker.run_once(block_ms=1)
        if (await server.services.jobs.counts())["dead"]:
            break
    assert running_seen == [1, 1, 1]
    samples = await scrape(server)
    assert value(samples, "sessionhub_jobs_running") == 0
    assert value(samples, "sessionhub_jobs_retried_total") == 2
    assert value(samples, "sessionhub_jobs_dead_lettered_total") == 1
    assert value(samples, "sessionhub_jobs", state="dead") == 1  # the store's own figure agrees


async def test_each_socket_event_is_logged_once_with_an_id(
    server: ServerUnderTest, clients: list[Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sessionhub.event")
    session_id = await server.create_session("alice")
    alice = await connected(server, clients)
    assert (await alice.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    assert (await alice.call("subscribe_on_session", {"session_id": "nope"}))["error"] == "invalid_session_id"
    assert (await alice.call("made_up\nforged line", {}))["error"] == "unknown_event"
    records = [r for r in caplog.records if r.name == "sessionhub.event"]
    assert [(r.event, r.outcome) for r in records] == [  # type: ignore[attr-defined]
        ("subscribe_on_session", "ok"),
        ("subscribe_on_session", "invalid_session_id"),
        ("unknown", "unknown_event"),  # the client's name never reaches the log
    ]
    ids = [r.request_id for r in records]  # type: ignore[attr-defined]
    assert len(set(ids)) == 3 and all(ids)
    assert {r.sid for r in records} == {alice.sio.get_sid("/")}  # type: ignore[attr-defined]
    assert records[1].session_id == ""  # type: ignore[attr-defined]  # an invalid id is not logged
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["event"] == "subscribe_on_session" and line["session_id"] == session_id and line["outcome"] == "ok"
    assert line["request_id"] == ids[0] and line["duration_ms"] >= 0 and line["logger"] == "sessionhub.event"
    assert line["level"] == "INFO"


async def test_process_platform_and_build_figures_are_scraped(server: ServerUnderTest) -> None:
    samples = await scrape_url(server.url, admin_token(server))
    names = {name for name, _ in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names
    build = [dict(labels) for name, labels in samples if name == "sessionhub_build_info"]
    assert build == [{"version": version("sessionhub"), "python": platform.python_version()}]
