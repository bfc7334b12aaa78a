"""The embedded Redis has one owner: real `sessionhub serve` / `worker` processes, kill -9, restarts.

Two redis-servers on one append-only folder would hand out the same log offset twice, so each
test also counts the redis-server processes started with the folder's config.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from server import redis_embed
from server.redis_embed import EmbeddedRedis
from tests.helpers import CHILD_TEST_TIMEOUT_S, Client, free_port
from tests.test_processes import ROOT, _wait_ready, assert_ran_once, mint, node_env, post

pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # `serve` children start


def redis_servers_on(data_dir: Path) -> list[int]:
    """Pids of live processes working in ``data_dir``'s redis folder (redis-server chdirs to its dir)."""
    folder = (data_dir / "redis").resolve()
    pids = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if Path(os.readlink(cwd)) == folder:
                pids.append(int(cwd.parent.name))
        except OSError:
            pass  # exited while we looked, or a zombie
    return pids


def spawn(command: str, data_dir: Path, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, "-m", "server", command] + (["--port", str(port)] if command == "serve" else [])
    proc = subprocess.Popen(
        args, cwd=ROOT, env=node_env(data_dir, None, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    return proc, f"http://127.0.0.1:{port}"


async def stop(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM, wait; returns what the process wrote to stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=CHILD_TEST_TIMEOUT_S / 3)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return stderr.decode()


@asynccontextmanager
async def serving(data_dir: Path, **extra: str) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    proc, url = spawn("serve", data_dir, **extra)
    try:
        await _wait_ready(url, proc)
        yield proc, url
    finally:
        await stop(proc)


async def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_kill_9_of_serve_takes_its_redis_server_down(tmp_path: Path) -> None:
    async with serving(tmp_path) as (proc, _):
        assert len(redis_servers_on(tmp_path)) == 1
        proc.kill()
        proc.wait(5)
        # PR_SET_PDEATHSIG: the kernel SIGTERMs the child when its parent dies, however it dies.
        assert await wait_until(lambda: not redis_servers_on(tmp_path), 5), "redis-server outlived its serve"
    async with serving(tmp_path):  # a restart after the kill -9 works, with one redis-server
        assert len(redis_servers_on(tmp_path)) == 1


async def test_a_second_serve_on_the_same_folder_is_refused_with_one_line(tmp_path: Path) -> None:
    async with serving(tmp_path) as (first, _):
        second, _ = spawn("serve", tmp_path)
        try:
            _, stderr = await asyncio.to_thread(second.communicate, timeout=CHILD_TEST_TIMEOUT_S / 3)
        finally:
            await stop(second)  # when it did not refuse
        lines = stderr.decode().strip().splitlines()
        assert second.returncode == 1
        busy = f"the data folder {tmp_path} is in use by another sessionhub serve (pid {first.pid})"
        assert lines == [f"sessionhub: {busy}"]
        assert len(redis_servers_on(tmp_path)) == 1


async def test_an_orphaned_redis_server_is_stopped_before_a_new_one_starts(tmp_path: Path) -> None:
    """Where PDEATHSIG does not exist (or an older serve left one), the orphan is found by its pid file."""
    orphan = EmbeddedRedis(tmp_path)
    client = Redis.from_url(await orphan.start())
    # An orphan's serve is gone: nobody starts it again once it is stopped. This one's supervisor
    # (in this process) did, and a start that failed at once (the port taken) was a second
    # redis-server on the folder for a moment, seen by the check below on a loaded machine.
    orphan._supervisor.cancel()
    try:
        await client.set("written-by-the-orphan", "kept")
        assert redis_servers_on(tmp_path) == [orphan.pid] == [int((tmp_path / "redis.pid").read_text())]
        async with serving(tmp_path):
            assert orphan.pid not in redis_servers_on(tmp_path)
            assert len(redis_servers_on(tmp_path)) == 1
            # The orphan flushed its append-only file on SIGTERM/SHUTDOWN: the new server has the write.
            fresh = Redis.from_url((tmp_path / "redis.url").read_text().strip())
            try:
                assert await fresh.get("written-by-the-orphan") == b"kept"
            finally:
                await fresh.aclose()
    finally:
        await client.aclose()
        await orphan.stop()


async def test_a_worker_follows_serve_to_its_new_redis_server(tmp_path: Path) -> None:
    token = mint("alice", "read_own", "create", "update")
    async with serving(tmp_path, SESSIONHUB_INPROCESS_WORKERS="0"):
        worker, _ = spawn("worker", tmp_path)
        assert worker.stdout is not None
        running = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 20)
        assert running.startswith(b"sessionhub worker "), running
    # serve stopped (its Redis too); a new one starts a redis-server on another port and password.
    try:
        async with serving(tmp_path, SESSIONHUB_INPROCESS_WORKERS="0") as (_, url):
            status, created = await post(f"{url}/voicebot/create_session", token)
            assert status == 201
            client = Client(url, token)
            try:
                await client.connect()
                await client.call("subscribe_on_session", {"session_id": created["session_id"]})
                await client.call("post_process_session", {"session_id": created["session_id"]})
                # No worker in serve: only the separate worker process can run the job.
                await client.wait_for(lambda: bool(client.named("job_result")), timeout=15)
                await assert_ran_once(client, None, "POST_PROCESS_SESSION")
            finally:
                await client.close()
    finally:
        stderr = await stop(worker)
        assert worker.returncode == 0, stderr


async def test_the_embedded_redis_never_takes_the_port_the_server_is_about_to_listen_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --port P`` starts its Redis before it binds P, so P is free when the Redis' port is
    drawn, and the kernel may hand it out: a fresh-clone run saw the server then fail with
    "address already in use". The draws here replay that: the kernel offers P first."""
    server_port = free_port()
    offered = [server_port, server_port]
    kernel = redis_embed.any_free_port
    monkeypatch.setattr(redis_embed, "any_free_port", lambda: offered.pop() if offered else kernel())
    embedded = EmbeddedRedis(tmp_path, avoid_ports={server_port})
    url = await embedded.start()
    try:
        assert not offered  # both offers of P were drawn, and turned down
        assert f"127.0.0.1:{server_port}/" not in url
        client = Redis.from_url(url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", server_port))  # still the server's to take
    finally:
        await embedded.stop()


async def test_an_embedded_redis_server_that_dies_under_serve_is_started_again(tmp_path: Path) -> None:
    """Killed under a running serve, the redis-server comes back on the same address (the
    server's clients reconnect by themselves) from its append-only file: serve is ready again
    without a restart, and what was written before is still there."""
    token = mint("alice", "read_own", "create", "update")
    async with serving(tmp_path) as (proc, url):
        status, created = await post(f"{url}/voicebot/create_session", token, {"session_name": "kept"})
        assert status == 201
        url_before = (tmp_path / "redis.url").read_text()
        client = Redis.from_url(url_before.strip())
        try:
            await client.execute_command("BGREWRITEAOF")  # the session is on disk, whatever the fsync timing
            await wait_for_aof_rewrite(client)
        finally:
            await client.aclose()
        [first] = redis_servers_on(tmp_path)
        os.kill(first, signal.SIGKILL)
        assert await wait_until(lambda: redis_servers_on(tmp_path) not in ([], [first]), 30), "not started again"
        await _wait_ready(url, proc)
        assert (tmp_path / "redis.url").read_text() == url_before
        assert int((tmp_path / "redis.pid").read_text()) == redis_servers_on(tmp_path)[0]
        status, body = await post(f"{url}/voicebot/create_session", token, {"session_name": "after"})
        assert status == 201, body
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{url}/voicebot/sessions/{created['session_id']}", headers=headers) as response:
                assert response.status == 200 and (await response.json())["session_name"] == "kept"


async def wait_for_aof_rewrite(client: Redis, timeout_s: float = 30) -> None:
    """Until Redis reports no append-only rewrite running or scheduled."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        info = await client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return
        assert asyncio.get_running_loop().time() < deadline, "the AOF rewrite never finished"
        await asyncio.sleep(0.05)


async def test_the_embedded_redis_has_a_maxmemory_out_of_the_box(tmp_path: Path) -> None:
    """Without a maxmemory the embedded Redis grew until the OS killed it, and the storage guard
    had no budget: by default it is half the machine's (or cgroup's) memory, ``noeviction``;
    ``SESSIONHUB_EMBEDDED_REDIS_MAXMEMORY_BYTES`` sets it (0: none)."""
    expected = redis_embed.default_maxmemory_bytes()
    assert 0 < expected <= redis_embed.available_memory_bytes() // 2
    for setting, maxmemory in ((None, expected), ("67108864", 64 << 20), ("0", 0)):
        extra = {"SESSIONHUB_EMBEDDED_REDIS_MAXMEMORY_BYTES": setting} if setting is not None else {}
        async with serving(tmp_path, **extra):
            client = Redis.from_url((tmp_path / redis_embed.URL_FILE).read_text().strip(), decode_responses=True)
            try:
                config = await client.config_get("maxmemory*")
            finally:
                await client.aclose()
        assert (int(config["maxmemory"]), config["maxmemory-policy"]) == (maxmemory, "noeviction"), setting
