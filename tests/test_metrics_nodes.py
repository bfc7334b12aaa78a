"""Clients and subscriptions per node: on /admin/metrics (heartbeats) and summed on /metrics (multiprocess)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from handlers.admin.nodes import NODES_KEY
from tests.conftest import start_server
from tests.helpers import CHILD_TEST_TIMEOUT_S, Client, RedisProcess, ServerUnderTest, free_port
from tests.admin.test_http import admin_token
from tests.admin.test_prometheus import ready, serve
from tests.test_metrics import scrape_url, value


async def admin_metrics(node: ServerUnderTest) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin_token(node)}"}
    async with aiohttp.ClientSession() as http, http.get(node.url + "/admin/metrics", headers=headers) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


async def subscribed(node: ServerUnderTest, clients: list[Client], *session_ids: str) -> Client:
    client = Client(node.url, node.token("alice"))
    clients.append(client)
    await client.connect()
    for session_id in session_ids:
        assert (await client.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    return client


async def test_admin_metrics_lists_clients_and_subscriptions_per_node(
    redis: Any, redis_process: RedisProcess, tmp_path: Path
) -> None:
    a = await start_server(redis_process.url, tmp_path / "a")
    b = await start_server(redis_process.url, tmp_path / "b")
    clients: list[Client] = []  # not the fixture: it would start a third node
    try:
        first, second = await a.create_session("alice"), await a.create_session("alice")
        await subscribed(a, clients, first, second)
        await subscribed(a, clients, first)
        await subscribed(b, clients)
        await admin_metrics(b)  # each node writes its heartbeat as it answers
        ours = {a.app[NODES_KEY].node_id, b.app[NODES_KEY].node_id}
        nodes = [n for n in (await admin_metrics(a))["nodes"] if n["node"] in ours]  # not a closing test's
        assert sorted((n["clients"], n["subscriptions"]) for n in nodes) == [(1, 0), (2, 3)]
        assert all(n["bus_live"] and not n["stale"] for n in nodes)
        for client in clients:
            await client.close()
        for _ in range(100):  # disconnects are handled on the server's time
            await admin_metrics(b)
            nodes = [n for n in (await admin_metrics(a))["nodes"] if n["node"] in ours]
            if [(n["clients"], n["subscriptions"]) for n in nodes] == [(0, 0), (0, 0)]:
                break
            await asyncio.sleep(0.05)
        assert [(n["clients"], n["subscriptions"]) for n in nodes] == [(0, 0), (0, 0)]
    finally:
        for client in clients:
            await client.close()
        await a.stop()
        await b.stop()


@pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # two `serve` children start
async def test_live_gauges_sum_the_running_processes_and_drop_a_killed_one(
    server: ServerUnderTest, redis_process: RedisProcess, tmp_path: Path, clients: list[Client]
) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    ports = [free_port(), free_port()]
    processes = [await serve(redis_process.url, port, multiproc, tmp_path / f"d{port}") for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    token = admin_token(server)
    try:
        await asyncio.gather(*(ready(url, p) for url, p in zip(urls, processes, strict=True)))
        session_id = await server.create_session("alice")
        for url, count in zip(urls, (2, 3), strict=True):
            for _ in range(count):
                client = Client(url, server.token("alice"))
                clients.append(client)
                await client.connect()
                assert (await client.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
        samples = await scrape_url(urls[0], token)
        assert value(samples, "sessionhub_connected_clients") == 5
        assert value(samples, "sessionhub_subscriptions") == 5
        assert value(samples, "sessionhub_socket_events_total", event="subscribe_on_session", outcome="ok") == 5
        processes[1].kill()  # no clean stop: its clients are never seen leaving
        await asyncio.wait_for(processes[1].wait(), 10)
        samples = await scrape_url(urls[0], token)
        assert value(samples, "sessionhub_connected_clients") == 2  # the killed process's gauges are gone
        assert value(samples, "sessionhub_subscriptions") == 2
        assert value(samples, "sessionhub_socket_events_total", event="subscribe_on_session", outcome="ok") == 5
        survivor = processes[0]
        assert list(multiproc.glob(f"gauge_live*_{survivor.pid}.db"))
        for client in clients[:2]:  # its own (a stop with clients on it waits for them)
            await client.close()
        survivor.terminate()  # a clean stop removes its live gauges itself
        await asyncio.wait_for(survivor.wait(), 10)
        assert not list(multiproc.glob(f"gauge_live*_{survivor.pid}.db"))
    finally:
        for client in clients:
            await client.close()
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 10)
