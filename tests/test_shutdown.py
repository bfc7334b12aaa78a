"""A clean stop of `sessionhub serve` with a subscribed client connected logs no lost Redis link
(issue 25): on its own Redis and on the embedded one, by SIGTERM to the process and by Ctrl-C
(SIGINT to the whole process group, the embedded redis-server included)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from storage.keys import Keys
from tests.helpers import (
    CHILD_TEST_TIMEOUT_S,
    Client,
    RedisProcess,
    free_port,
    serving_lane,
    wait_until_ready,
    writes_held,
)
from tests.raw_wire import port_of
from tests.test_processes import ROOT, _wait_ready, mint, node_env, post

pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
@pytest.mark.parametrize("redis_kind", ["REDIS_URL", "embedded"])
async def test_a_clean_stop_with_a_subscribed_client_logs_no_lost_link(
    redis_process: RedisProcess, tmp_path: Path, redis_kind: str, how: str
) -> None:
    token = mint("alice", "read_own", "create", "update")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        cwd=ROOT,
        env=node_env(tmp_path, redis_process.url if redis_kind == "REDIS_URL" else None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    url = f"http://127.0.0.1:{port}"
    client = Client(url, token)
    trickle: asyncio.StreamWriter | None = None
    try:
        await _wait_ready(url, proc)
        status, created = await post(f"{url}/voicebot/create_session", token)
        assert status == 201
        await client.connect()
        assert (await client.call("subscribe_on_session", {"session_id": created["session_id"]}))["ok"]
        # A request in flight (its body trickles) holds the stop for the shutdown timeout:
        # whatever dies meanwhile (a Ctrl-C reaches the embedded redis-server too) shows.
        _, trickle = await asyncio.open_connection("127.0.0.1", port)
        trickle.write(
            b"POST /voicebot/create_session HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + token.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await trickle.drain()
        await wait_until_ready(url, proc.poll)  # a later request answered: the earlier one was read
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 20)
        await client.close()
        if trickle is not None:
            trickle.close()
        # Closed on every path: a pipe left to the garbage collector fails a later test of this
        # worker with an "unclosed file" warning.
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    assert "lost its Redis link" not in stderr, stderr
    assert "Traceback" not in stderr, stderr


async def test_a_stopped_server_leaves_no_task_running(
    redis_process: RedisProcess, redis: object, tmp_path: Path
) -> None:
    """Every task a server starts ends with it. Engine.IO's ping-timeout task was left running:
    it held the whole app (its Redis client included) until the event loop closed, one per
    server a test run starts."""
    from tests.conftest import start_server

    before = asyncio.all_tasks()
    srv = await start_server(redis_process.url, tmp_path)
    client = Client(srv.url, srv.token("alice"))
    try:
        await client.connect()
        session_id = await srv.create_session("alice")
        assert (await client.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    finally:
        await client.close()
        await srv.stop()
    for _ in range(3):
        await asyncio.sleep(0)  # loop turns, for a task that was told to stop to return
    # The stock lane's per-connection ping timer (python-engineio's) ends by itself within a
    # ping interval; it is no task left for good.
    left = {
        task
        for task in asyncio.all_tasks() - before - {asyncio.current_task()}
        if task.get_coro().__qualname__ != "AsyncSocket._send_ping"  # type: ignore[union-attr]
    }
    assert not left, left


async def port_open(url: str) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
    except OSError:
        return False
    writer.close()
    return True


async def test_an_event_applied_while_the_server_stops_is_answered_and_later_ones_refused(
    redis_process: RedisProcess, redis: Redis, tmp_path: Path
) -> None:
    """A change still waiting for Redis when the server is told to stop is answered before the
    connection is closed (the transport ended its sessions first, so it was applied but never
    acknowledged: a client could not tell it from one never made), and an event arriving
    meanwhile is refused ``unavailable`` rather than run."""
    from tests.conftest import start_server

    # No heartbeat meanwhile: the one write held in Redis is then the change's.
    srv = await start_server(redis_process.url, tmp_path, admin_node_heartbeat_s=300)
    writer, other = Client(srv.url, srv.token("alice")), Client(srv.url, srv.token("alice"))
    stopping: asyncio.Task[None] | None = None
    try:
        await writer.connect()
        await other.connect()
        session_id = await srv.create_session("alice")
        await redis.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
        try:
            ack = asyncio.ensure_future(
                writer.call("set_session_status", {"session_id": session_id, "status": "recording"})
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while not await writes_held(redis, {"zadd", "evalsha", "eval"}):  # its lease step, or its commit
                assert loop.time() < deadline, "the change never reached Redis"
                await asyncio.sleep(0.02)
            stopping = asyncio.ensure_future(srv.stop())
            if serving_lane() == "stock":
                # aiohttp reads nothing more from any connection once its shutdown begins (the
                # stock lane's WebSockets are its requests): a refusal cannot be seen. The stop
                # has begun once the port takes no connection.
                while await port_open(srv.url):
                    assert loop.time() < deadline, "the stop never began"
                    await asyncio.sleep(0.02)
            else:
                # Until the stop has begun: then the other connection's events are refused, not run.
                while (refused := await other.call("subscribe_on_session", {"session_id": session_id}))["ok"]:
                    assert loop.time() < deadline, "the stop never began"
                    await asyncio.sleep(0.02)
                assert refused["error"] == "unavailable", refused
        finally:
            await redis.execute_command("CLIENT", "UNPAUSE")
        answered = await asyncio.wait_for(ack, 15)
        assert answered["ok"] is True and answered["status"] == "recording", answered
        await asyncio.wait_for(stopping, 30)
        # Made (then paused, as a stopping node pauses the recordings it leads), not left "ready".
        assert (await redis.hget(Keys("sh").session(session_id), "status")) in ("recording", "paused")
    finally:
        await writer.close()
        await other.close()
        if stopping is None:
            await srv.stop()
