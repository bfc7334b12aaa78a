"""What an operator sees while Redis is away, and while a node starts: the alerts that say so
reach them, and a starting node raises none."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from handlers.admin.nodes import NODES_KEY
from tests.admin.test_http import admin_token
from tests.conftest import start_server
from tests.helpers import RedisProcess


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


async def test_with_redis_away_the_alerts_and_the_scrape_say_so(tmp_path: Path) -> None:
    """Every other check read Redis too and failed the whole answer: /admin/alerts, /admin/metrics
    and /metrics answered 503, so ``redis_unreachable``, the alert made for that case, never
    reached an operator or a scraper."""
    own = RedisProcess(tmp_path / "redis", appendonly=True)
    own.start()
    node = await start_server(own.url, tmp_path / "node")
    try:
        headers = {"Authorization": f"Bearer {admin_token(node)}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            status, body = await _get(http, f"{node.url}/admin/alerts")
            assert status == 200 and json.loads(body)["alerts"] == [], body
            own.stop()
            status, body = await _get(http, f"{node.url}/admin/alerts")
            assert status == 200, body
            alerts = json.loads(body)["alerts"]
            assert [(a["alert"], a["severity"]) for a in alerts] == [("redis_unreachable", "critical")], alerts
            status, body = await _get(http, f"{node.url}/metrics")
            assert status == 200, body
            assert 'sessionhub_alerts{alert="redis_unreachable"} 1.0' in body
            assert 'sessionhub_alerts{alert="no_replica"} 0.0' in body  # every alert has its gauge
            assert "sessionhub_build_info{" in body
            own.start()
            async with asyncio.timeout(15):
                while True:  # the figures read again once Redis is back
                    status, body = await _get(http, f"{node.url}/admin/alerts")
                    if status == 200 and json.loads(body)["alerts"] == []:
                        break
                    await asyncio.sleep(0.05)
            status, body = await _get(http, f"{node.url}/metrics")
            assert status == 200 and 'sessionhub_alerts{alert="redis_unreachable"} 0.0' in body
    finally:
        await node.stop()
        own.stop()


async def test_a_starting_nodes_first_heartbeat_says_its_bus_is_live(tmp_path: Path) -> None:
    """Written before its bus listened, a starting node's first heartbeat said "bus not live"
    for a whole interval: a bus_down alert at every restart of a rolling deploy."""
    own = RedisProcess(tmp_path / "redis")
    own.start()
    node = await start_server(own.url, tmp_path / "node", admin_node_heartbeat_s=300)
    try:
        heartbeat = node.app[NODES_KEY]
        async with asyncio.timeout(15):
            while (text := await node.services.redis.hget(node.services.keys.admin_nodes(), heartbeat.node_id)) is None:
                await asyncio.sleep(0.02)
        assert json.loads(text)["bus_live"] is True, text
    finally:
        await node.stop()
        own.stop()
