"""A Redis whose disk refuses its append-only file (MISCONF): writes answer ``unavailable`` with
a reason, /readyz says degraded, the admin dashboard says why (not "unreachable") and still
answers. A private redis-server whose data folder is a tiny tmpfs the test fills."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tests.admin.test_http import admin_token
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.small_disk import fill, small_disk

DISK_BYTES = 8 * 1024 * 1024


@dataclass
class DiskFull:
    server: ServerUnderTest
    admin: Redis
    filler: Path
    session_id: str  # alice's, made before the disk filled


async def _refused(admin: Redis) -> bool:
    try:
        await admin.set("probe", "x" * 4096)  # each write grows the AOF: the disk refuses one soon
    except ResponseError as exc:
        assert "MISCONF" in str(exc), exc
        return True
    return False


@pytest_asyncio.fixture
async def disk_full(tmp_path: Path) -> AsyncIterator[DiskFull]:
    with small_disk(tmp_path / "disk", DISK_BYTES) as disk:
        own = RedisProcess(disk / "redis", appendonly=True)
        own.start()
        admin = Redis.from_url(own.url)
        server = await start_server(own.url, tmp_path / "node", storage_guard_ratio=0)
        try:
            session_id = await server.create_session("alice")
            filler = fill(disk)
            async with asyncio.timeout(20):  # Redis notices at its next AOF write
                while not await _refused(admin):
                    await asyncio.sleep(0.02)
            yield DiskFull(server, admin, filler, session_id)
        finally:
            await server.stop()
            await admin.aclose()
            own.stop()


async def _get(http: aiohttp.ClientSession, url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(url, headers=headers) as response:
        return response.status, await response.json()


async def test_writes_are_unavailable_with_the_disk_as_the_reason(
    disk_full: DiskFull, caplog: pytest.LogCaptureFixture
) -> None:
    server = disk_full.server
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    client = Client(server.url, server.token("alice"))
    try:
        await client.connect()
        with caplog.at_level(logging.WARNING):
            async with (
                aiohttp.ClientSession() as http,
                http.post(server.url + "/voicebot/create_session", json={}, headers=headers) as response,
            ):
                status, body, retry = response.status, await response.json(), response.headers.get("Retry-After")
            assert (status, body["error"], body.get("reason")) == (503, "unavailable", "redis_disk_error"), body
            assert body["retry_after_s"] == 60 and retry == "60", (body, retry)
            async with aiohttp.ClientSession() as http, http.post(server.url + "/api/sessions", json={}) as response:
                status, body = response.status, await response.json()
            # The pattern API says it in its own shape, with the same reason.
            assert (status, body["error"], body.get("reason")) == (503, "Service unavailable", "redis_disk_error")
            for _ in range(3):  # many refusals, one warning
                ack = await client.call(
                    "set_session_status", {"session_id": disk_full.session_id, "status": "recording"}
                )
                assert (ack["ok"], ack["error"], ack.get("reason")) == (False, "unavailable", "redis_disk_error"), ack
                assert ack["retry_after_s"] == 60, ack
            # A session stored just before the disk filled: keeping its owner's identity is
            # refused too, said in a line, not an ERROR traceback (a verifier's MISCONF run).
            await server.services.sessions.owned_by("alice")
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]
        said = [r for r in caplog.records if "cannot write to its disk" in r.getMessage()]
        assert len(said) == 1 and not said[0].exc_info, [r.getMessage() for r in said]
    finally:
        await client.close()


async def test_readyz_and_the_admin_dashboard_say_the_disk_refuses(disk_full: DiskFull) -> None:
    server = disk_full.server
    token = admin_token(server)
    async with aiohttp.ClientSession() as http:
        status, ready = await _get(http, server.url + "/readyz")
        assert status == 503 and ready["redis"] is True, ready
        assert str(ready["degraded"]).startswith("redis_disk_error: ") and "AOF" in ready["degraded"], ready
        status, alerts = await _get(http, server.url + "/admin/alerts", token)
        assert status == 200, alerts
        raised = {a["alert"]: a for a in alerts["alerts"]}
        assert "redis_unreachable" not in raised, raised
        assert raised["redis_disk_error"]["severity"] == "critical", raised
        assert "AOF" in raised["redis_disk_error"]["message"], raised
        status, metrics = await _get(http, server.url + "/admin/metrics", token)
        assert status == 200 and "redis_disk_error" in {a["alert"] for a in metrics["alerts"]}, metrics
        assert [node["stale"] for node in metrics["nodes"]] == [False], metrics["nodes"]
        async with http.get(server.url + "/metrics", headers={"Authorization": f"Bearer {token}"}) as response:
            scrape = await response.text()
        assert response.status == 200 and 'sessionhub_alerts{alert="redis_disk_error"} 1.0' in scrape
        assert 'sessionhub_alerts{alert="redis_unreachable"} 0.0' in scrape
        disk_full.filler.unlink()  # room again: Redis writes its AOF at its next retry
        async with asyncio.timeout(20):
            while (await _get(http, server.url + "/readyz"))[0] != 200:
                await asyncio.sleep(0.05)
