"""A node restarted on its address replaces its dead self (audit "multinode", finding 1).

Each crashed and restarted node stayed listed "down" with a ``bus_down`` warning for an hour:
after 8 restarts ``/admin`` showed 8 dead nodes beside the 3 serving, and nothing told the
operator which address any of them had. A heartbeat now says the address the node listens on;
a dead node whose address a later node of the same host listens on is named by that node
(``replaces``), not listed down, and raises no alert. A dead node with no successor still does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from handlers.admin.nodes import NODES_KEY
from tests.admin.test_http import admin_token
from tests.conftest import start_server
from tests.helpers import CHILD_TEST_TIMEOUT_S, SECRET, RedisProcess, ServerUnderTest, free_port, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_S = 0.2
STALE_MS = 3 * HEARTBEAT_S * 1000  # handlers.admin.nodes.STALE_INTERVALS
WAIT_S = 30.0


async def admin_view(server: ServerUnderTest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The nodes of ``GET /admin/metrics`` and the alerts of ``GET /admin/alerts``."""
    headers = {"Authorization": f"Bearer {admin_token(server)}"}
    async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
        async with http.get("/admin/metrics") as answer:
            assert answer.status == 200, await answer.text()
            nodes = (await answer.json())["nodes"]
        async with http.get("/admin/alerts") as answer:
            assert answer.status == 200, await answer.text()
            alerts = (await answer.json())["alerts"]
    return nodes, alerts


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds (bounded)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


def bus_down(alerts: list[dict[str, Any]]) -> list[str]:
    return sorted(alert["node"] for alert in alerts if alert["alert"] == "bus_down")


async def serve(redis_url: str, port: int, data: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SESSIONHUB_PORT": str(port),
        "SESSIONHUB_JWT_SECRET": SECRET,
        "SESSIONHUB_DATA_DIR": str(data),
        "SESSIONHUB_INPROCESS_WORKERS": "0",
        "SESSIONHUB_LOG_LEVEL": "WARNING",
        "SESSIONHUB_ADMIN_NODE_HEARTBEAT_S": str(HEARTBEAT_S),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    await wait_until_ready(f"http://127.0.0.1:{port}", lambda: process.returncode)
    return process


async def node_on(observer: ServerUnderTest, address: str, *, besides: tuple[str, ...] = ()) -> str:
    """The id of the node that says it listens on ``address`` (not one of ``besides``), once it has."""
    found: list[str] = []

    async def listed() -> bool:
        nodes, _ = await admin_view(observer)
        found[:] = [n["node"] for n in nodes if n.get("address") == address and n["node"] not in besides]
        return bool(found)

    await until(listed, f"a node on {address}")
    return found[0]


async def stopped_beating(redis: Redis, observer: ServerUnderTest, node_id: str) -> None:
    """Wait until ``node_id``'s last heartbeat is old enough to count as stale."""

    async def stale() -> bool:
        text = await redis.hget(observer.services.keys.admin_nodes(), node_id)
        return text is not None and observer.services.clock.now_ms() - json.loads(text)["ts"] > STALE_MS

    await until(stale, f"{node_id} stale")


async def killed(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)  # a crash: no goodbye, its heartbeat left behind
    await asyncio.wait_for(process.wait(), 10)


@pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)
async def test_a_node_killed_and_restarted_on_its_port_is_replaced_not_down(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    observer = await start_server(redis_process.url, tmp_path / "observer", admin_node_heartbeat_s=HEARTBEAT_S)
    processes: list[asyncio.subprocess.Process] = []
    try:
        port = free_port()
        address = f"127.0.0.1:{port}"
        processes.append(await serve(redis_process.url, port, tmp_path / "first"))
        first = await node_on(observer, address)
        await killed(processes[0])
        await stopped_beating(redis, observer, first)
        nodes, alerts = await admin_view(observer)
        assert bus_down(alerts) == [first]  # down, and nothing serves its address: said

        processes.append(await serve(redis_process.url, port, tmp_path / "second"))
        second = await node_on(observer, address, besides=(first,))
        nodes, alerts = await admin_view(observer)
        by_id = {node["node"]: node for node in nodes}
        assert first not in by_id, nodes  # not a row "down" of its own
        assert by_id[second]["replaces"] == [first]
        assert by_id[second]["address"] == address and not by_id[second]["stale"]
        assert bus_down(alerts) == [], alerts
        assert by_id[observer.app[NODES_KEY].node_id]["address"] is None  # serves no port of its own

        # The successor dies too, and nothing takes its place: one node down, one alert.
        await killed(processes[1])
        await stopped_beating(redis, observer, second)
        nodes, alerts = await admin_view(observer)
        by_id = {node["node"]: node for node in nodes}
        assert first not in by_id and by_id[second]["stale"] and by_id[second]["replaces"] == [first]
        assert bus_down(alerts) == [second], alerts
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await observer.stop()


async def test_only_a_later_node_of_the_same_host_on_the_same_address_replaces_a_dead_one(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """Records as dead nodes leave them: a node of another host on the same address (every node's
    ``0.0.0.0:8080``), one that listened before the dead one's last heartbeat, and a node of the
    release before (no address) replace nothing, and each is still down."""
    server = await start_server(redis_process.url, tmp_path / "node", admin_node_heartbeat_s=HEARTBEAT_S)
    try:
        host = socket.gethostname()[:40]
        port = int(server.url.rsplit(":", 1)[1])
        address = f"127.0.0.1:{port}"
        clock = server.services.clock
        heartbeat = server.app[NODES_KEY]
        await heartbeat.listening_on("127.0.0.1", port)
        started_ms = heartbeat.listening_since_ms
        assert started_ms is not None
        before = started_ms - 5_000  # a last heartbeat before the server began to listen
        dead: dict[str, dict[str, Any]] = {
            f"{host}:101:aaaaaa": {"ts": before, "address": address, "listening_since": before - 4_000},
            f"{host}:102:bbbbbb": {"ts": started_ms + 1, "address": address},  # beat after it began
            "other-host:103:cccccc": {"ts": before, "address": address, "listening_since": 0},
            f"{host}:104:dddddd": {"ts": before},  # of the release before: no address
            f"{host}:105:eeeeee": {"ts": before, "address": "127.0.0.1:1"},  # another port
        }
        for node_id, fields in dead.items():
            beat = {"bus_live": True, "pid": 1, "clients": 3, "subscriptions": 4, **fields}
            await redis.hset(server.services.keys.admin_nodes(), node_id, json.dumps(beat))
        clock.shift_ms += 10_000  # every record above is stale now, the server's own beat is not

        nodes, alerts = await admin_view(server)
        by_id = {node["node"]: node for node in nodes}
        assert by_id[heartbeat.node_id]["replaces"] == [f"{host}:101:aaaaaa"]
        assert f"{host}:101:aaaaaa" not in by_id
        still_down = sorted(set(dead) - {f"{host}:101:aaaaaa"})
        assert bus_down(alerts) == still_down, alerts
        assert all(by_id[node]["stale"] and by_id[node]["replaces"] == [] for node in still_down)
        assert by_id[f"{host}:104:dddddd"]["address"] is None
    finally:
        await server.stop()
