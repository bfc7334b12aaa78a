"""/metrics across processes: with PROMETHEUS_MULTIPROC_DIR, a scrape of one sums them all."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.helpers import (
    CHILD_TEST_TIMEOUT_S,
    SECRET,
    Client,
    RedisProcess,
    ServerUnderTest,
    free_port,
    wait_until_ready,
)
from tests.admin.test_http import admin_token

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # two `serve` children start


async def serve(redis_url: str, port: int, multiproc: Path, data: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SESSIONHUB_PORT": str(port),
        "SESSIONHUB_JWT_SECRET": SECRET,
        "SESSIONHUB_DATA_DIR": str(data),
        "SESSIONHUB_INPROCESS_WORKERS": "0",
        "SESSIONHUB_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL
    )


async def ready(url: str, process: asyncio.subprocess.Process) -> None:
    await wait_until_ready(url, lambda: process.returncode)


@pytest_asyncio.fixture
async def two_nodes(redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[list[str]]:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    ports = [free_port(), free_port()]
    processes = [await serve(redis_process.url, port, multiproc, tmp_path / f"d{port}") for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await asyncio.gather(*(ready(url, p) for url, p in zip(urls, processes, strict=True)))
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 10)


def healthz_count(text: str) -> float:
    match = re.search(
        r'^sessionhub_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


async def test_a_scrape_of_one_process_counts_the_requests_of_every_process(
    server: object, two_nodes: list[str]
) -> None:
    token = admin_token(server)  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as http:
        base = []
        for url in two_nodes:
            async with http.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200
                base.append(healthz_count(await response.text()))
        assert base[0] == base[1]  # both already see each other's start-up probes
        for url, count in zip(two_nodes, (3, 5), strict=True):
            for _ in range(count):
                async with http.get(url + "/healthz") as response:
                    assert response.status == 200
        async with http.get(two_nodes[0] + "/metrics", headers={"Authorization": f"Bearer {token}"}) as response:
            text = await response.text()
            assert healthz_count(text) == base[0] + 8
    # The refusal counters an alert rule watches are there at 0 before the first refusal (a
    # counter with no sample was left out of a multiprocess scrape: "no data").
    for name, labels in (
        ("sessionhub_storage_guard_refusals_total", 'what="guest"'),
        ("sessionhub_storage_guard_refusals_total", 'what="voice_create"'),
        ("sessionhub_disk_refusals_total", 'cause="reserve"'),
        ("sessionhub_disk_refusals_total", 'cause="disk_full"'),
    ):
        assert re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} 0\.0$", text, re.M), (name, labels)


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample of a scrape (0 when absent); ``labels`` as written, sorted by name."""
    braces = "{" + labels + "}" if labels else ""
    match = re.search(rf"^{re.escape(name + braces)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_per_event_figures_of_one_process_are_in_the_scrape_of_another_at_once(
    server: ServerUnderTest, two_nodes: list[str], clients: list[Client]
) -> None:
    """With the folder, events, acks and messages sent are written as they happen (no tallies
    held in a process until its own scrape): another process's scrape sees every one."""
    token = admin_token(server)
    session_id = await server.create_session("alice")
    recorder = Client(two_nodes[1], server.token("alice"))
    clients.append(recorder)
    await recorder.connect()
    assert (await recorder.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    statuses = ("recording", "paused") * 3
    for status in statuses:
        ack = await recorder.call("set_session_status", {"session_id": session_id, "status": status})
        assert ack["ok"] is True, ack
    await recorder.wait_for(lambda: len(recorder.offsets(session_id)) == len(statuses))
    async with (
        aiohttp.ClientSession() as http,
        http.get(two_nodes[0] + "/metrics", headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        text = await response.text()
    event = 'event="set_session_status"'
    assert sample(text, "sessionhub_socket_events_total", f'{event},outcome="ok"') == len(statuses)
    assert sample(text, "sessionhub_ack_seconds_count", event) == len(statuses)
    assert sample(text, "sessionhub_ack_seconds_bucket", f'{event},le="+Inf"') == len(statuses)
    assert sample(text, "sessionhub_fanout_seconds_count") >= 1
    # the connect, two acks of subscribing and status changes, the snapshot, the six events
    assert sample(text, "sessionhub_socket_messages_sent_total") >= 2 * len(statuses)


async def test_an_alert_raised_for_several_nodes_is_1_not_their_count(server: ServerUnderTest) -> None:
    """``sessionhub_alerts{alert}`` is 1 when raised, as its HELP and PROTOCOL say: with two nodes
    dead it said 2 (3, then 4, as more died: audit "multinode"), and a rule ``== 1`` went quiet."""
    now_ms = server.services.clock.now_ms()
    for node_id in ("gone-a:11:aaaaaa", "gone-b:12:bbbbbb"):  # heartbeats stopped a minute ago
        beat = {"bus_live": True, "ts": now_ms - 60_000, "pid": 1, "clients": 0, "subscriptions": 0}
        await server.services.redis.hset(server.services.keys.admin_nodes(), node_id, json.dumps(beat))
    headers = {"Authorization": f"Bearer {admin_token(server)}"}
    async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
        async with http.get("/admin/alerts") as answer:
            alerts = (await answer.json())["alerts"]
        async with http.get("/metrics") as answer:
            assert answer.status == 200
            text = await answer.text()
    assert sorted(a["node"] for a in alerts if a["alert"] == "bus_down") == ["gone-a:11:aaaaaa", "gone-b:12:bbbbbb"]
    assert re.search(r'^sessionhub_alerts\{alert="bus_down"\} 1\.0$', text, re.M), text
    assert re.search(r'^sessionhub_alerts\{alert="jobs_stuck"\} 0\.0$', text, re.M), text
