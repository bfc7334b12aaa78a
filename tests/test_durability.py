"""SESSIONHUB_DURABILITY: a change is acknowledged only once a replica (or the AOF) has it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from auth.claims import Permission
from protocol.errors import CodedError, ErrorCode
from tests.conftest import start_server
from tests.helpers import OWNER, Client, RedisProcess, ServerUnderTest, emit_all, free_port, redis_binary


async def set_status(client: Client, session_id: str, status: str) -> dict[str, Any]:
    return await client.call("set_session_status", {"session_id": session_id, "status": status})  # type: ignore[no-any-return]


async def alerts(server: ServerUnderTest) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {server.token('operator', perms=(Permission.ADMIN,))}"}
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/admin/alerts", headers=headers) as response:
        assert response.status == 200, await response.text()
        return list((await response.json())["alerts"])


async def readiness(server: ServerUnderTest) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/readyz") as response:
        return response.status, await response.json()


async def test_replica_durability_waits_for_a_replica(
    server: ServerUnderTest, redis_process: RedisProcess, redis: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session_id = await server.create_session("alice")  # on a node without the setting
    # A long recording lease, so this test is about the wait alone (the renewal of a lease taken
    # by a change answered unavailable has its own test below).
    # 3 s for a replica's acknowledgement: at 1 s, a replica that had to wait for a core (two
    # suites side by side) answered too late once (s31-g3). Without a replica the wait is the
    # whole 3 s, once.
    srv = await start_server(
        redis_process.url, tmp_path, durability="replica", durability_timeout_ms=3000, voice_recording_lease_ms=600_000
    )
    client = Client(srv.url, srv.token("alice"))
    replica: subprocess.Popen[bytes] | None = None
    try:
        await client.connect()
        with caplog.at_level(logging.WARNING, logger="storage.events"):
            ack = await set_status(client, session_id, "recording")
            # No replica: applied, but not acknowledged as durable.
            assert ack["ok"] is False and ack["error"] == "unavailable"
            again = await set_status(client, session_id, "recording")  # a retry: refused the same way
            assert again["ok"] is False and again["error"] == "unavailable"
        # And the operator is told, once (a new master without a replica refused every write of
        # its slots with nothing logged above INFO).
        said = [r.getMessage() for r in caplog.records if r.name == "storage.events"]
        assert len(said) == 1 and "not confirmed replica-durable" in said[0], said
        # /readyz says so too: the node answered 200 while every change it took was unavailable.
        status, ready = await readiness(srv)
        assert status == 503 and ready["redis"] is True and ready["bus"] is True, ready
        assert ready["degraded"].startswith("no_replica: 1 of 1 Redis primaries"), ready
        assert [a["without_replica"] for a in await alerts(srv) if a["alert"] == "no_replica"] == [1]

        port = free_port()
        replica = subprocess.Popen(
            [
                redis_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--dir",
                str(tmp_path),
                "--replicaof",
                "127.0.0.1",
                str(redis_process.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        follower = Redis(port=port, decode_responses=True)
        try:
            link = ""
            for _ in range(300):  # a full sync, bounded at 15 s
                with contextlib.suppress(OSError):
                    link = (await follower.info("replication")).get("master_link_status", "")
                if link == "up":
                    break
                await asyncio.sleep(0.05)
            assert link == "up"
            async with asyncio.timeout(15):  # the primary counts it online once it is in sync
                while (answer := await readiness(srv))[0] != 200:
                    await asyncio.sleep(0.05)
            assert answer[1]["degraded"] is None, answer
            assert not [a for a in await alerts(srv) if a["alert"] == "no_replica"]
            ack = await set_status(client, session_id, "paused")
            assert ack["ok"] is True and ack["changed"] is True
            assert await follower.hget(srv.services.keys.session(session_id), "status") == "paused"

            # A burst of them (pipelined on the fast lane): each still waits for its replica
            # before the next one commits, and they are answered in order.
            statuses = ["recording", "paused"] * 4
            sends = [("set_session_status", {"session_id": session_id, "status": s}) for s in statuses]
            answered = await asyncio.wait_for(emit_all(client, sends), 30)
            assert [index for index, _ in answered] == list(range(len(statuses)))
            assert [(a["ok"], a["changed"], a["status"]) for _, a in answered] == [(True, True, s) for s in statuses]
            assert await follower.hget(srv.services.keys.session(session_id), "status") == "paused"
        finally:
            await follower.aclose()
    finally:
        await client.close()
        await srv.stop()
        if replica is not None:
            replica.terminate()
            replica.wait(10)


async def test_a_recording_applied_but_not_confirmed_keeps_its_lease(
    server: ServerUnderTest, redis_process: RedisProcess, redis: Any, tmp_path: Path
) -> None:
    """``recording`` answered ``unavailable`` because no replica confirmed it was still applied,
    lease included: the recorder's node renews that lease as for an acknowledged change, so the
    sweeper does not pause a session whose recorder is still there (nor waits for a retry)."""
    session_id = await server.create_session("alice")
    lease_ms = 1500
    srv = await start_server(
        redis_process.url, tmp_path, durability="replica", durability_timeout_ms=100, voice_recording_lease_ms=lease_ms
    )
    client = Client(srv.url, srv.token("alice"))
    lease_key, session_key = srv.services.keys.voice_recording_lease(session_id), srv.services.keys.session(session_id)
    try:
        await client.connect()
        ack = await set_status(client, session_id, "recording")
        assert ack["ok"] is False and ack["error"] == "unavailable"  # no replica: applied, not durable
        taken = asyncio.get_running_loop().time()
        # Well past the first lease's end, the lease must still be held (renewed) and the
        # session still recording; without renewals the lease dies and the sweeper pauses it.
        while asyncio.get_running_loop().time() < taken + 2 * lease_ms / 1000:
            assert await redis.pttl(lease_key) > 0, "the lease ran out: nobody renewed it"
            assert await redis.hget(session_key, "status") == "recording"
            await asyncio.sleep(lease_ms / 1000 / 10)
    finally:
        await client.close()
        await srv.stop()


async def test_a_pause_the_sweeper_makes_unconfirmed_is_no_error_in_the_log(
    redis_process: RedisProcess, redis: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The recorder gone, the sweeper pauses its session; without a replica that pause is applied
    but not confirmed: the lease round logged it as a failure, with a traceback at ERROR."""
    maker = await start_server(redis_process.url, tmp_path / "maker")  # its sweeper must not pause it
    session_id = await maker.create_session("alice")
    await maker.stop()
    srv = await start_server(redis_process.url, tmp_path / "node", durability="replica", durability_timeout_ms=100)
    keys = srv.services.keys
    try:
        with caplog.at_level(logging.WARNING, logger="handlers.voice.recording"):
            # A recorder whose node died (no release): its lease runs out, the sweeper pauses.
            with pytest.raises(CodedError):  # applied, not confirmed
                await srv.services.voice.set_status(session_id, "recording", OWNER, holder="gone", lease_ms=200)
            await redis.zadd(keys.voice_recording_due(), {session_id: srv.services.clock.now_ms() + 200})
            async with asyncio.timeout(15):
                while await redis.hget(keys.session(session_id), "status") != "paused":
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(15):  # the round that paused it has said how it went
                while not [r for r in caplog.records if r.name == "handlers.voice.recording"]:
                    await asyncio.sleep(0.05)
        said = [r for r in caplog.records if r.name == "handlers.voice.recording"]
        assert not [r for r in said if r.levelno >= logging.ERROR], [r.getMessage() for r in said]
    finally:
        await srv.stop()


async def test_aof_durability_is_refused_at_start_by_a_redis_without_waitaof(
    redis_process: RedisProcess, redis: Any, tmp_path: Path
) -> None:
    info = await redis.info("server")
    if tuple(int(p) for p in info["redis_version"].split(".")[:2]) >= (7, 2):
        pytest.skip("this redis-server has WAITAOF; the refusal is for Redis before 7.2 or without appendonly")
    srv = await start_server(redis_process.url, tmp_path, durability="aof")
    try:
        with pytest.raises(CodedError) as refused:
            await srv.services.log.check_durability()
        assert refused.value.code is ErrorCode.UNAVAILABLE and "7.2" in refused.value.message
    finally:
        await srv.stop()


async def test_a_pattern_save_applied_but_not_confirmed_is_the_documented_503(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    """The pattern API answered a change applied but not confirmed durable with
    ``503 {"error": <the log's words>}`` and no ``Retry-After`` (audit cluster2): not its table."""
    from tests.patterns.test_http import create, fetch

    maker = await start_server(redis_process.url, tmp_path / "maker")
    async with aiohttp.ClientSession(base_url=maker.url) as http:
        session_id = await create(http)
    await maker.stop()
    srv = await start_server(redis_process.url, tmp_path / "node", durability="replica", durability_timeout_ms=100)
    try:
        async with aiohttp.ClientSession(base_url=srv.url) as http:
            async with http.patch(f"/api/sessions/{session_id}", json={"name": "Late"}) as response:
                assert (response.status, response.headers.get("Retry-After")) == (503, "1")
                body = await response.json()
            assert body["error"] == "Service unavailable" and "not confirmed" in body["message"], body
            status, doc, _ = await fetch(http, session_id)
        assert status == 200 and doc["name"] == "Late", doc  # applied
    finally:
        await srv.stop()
