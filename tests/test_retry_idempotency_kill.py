"""An ``Idempotency-Key`` create whose node is killed (-9) mid-request is applied once.

The node that runs the first request dies after it made the object and before it kept the answer
(or between two of its steps): no answer is stored, the claim runs out, and the client's resend
(here to another node) runs again. It must answer the object the dead node made, not make a
second one (handlers/idempotency.py: the objects' ids are derived from the key's claim).

The kill is put where it is wanted deterministically, with no hook in the product: the doomed
node is ``server.cli.main`` run by ``python -c`` after it replaced one method (the answer's
store, or a step of the create) with one that kills its own process there. Its claims last
``CLAIM_TTL_S`` = 2 s (the default 10 s would only make the test wait).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from storage.streams.repository import StreamSessions
from tests.helpers import RedisProcess, ServerUnderTest, free_port
from tests.test_processes import ROOT, _wait_ready, node_env

CLAIM_TTL_S = 2

# Where the doomed node dies: (module, class, method, "before" | "after" the method runs).
BEFORE_THE_ANSWER = ("storage.idempotency", "IdempotentAnswers", "store", "before")
BEFORE_SET_ACTIVE = ("storage.voice.repository", "VoiceSessions", "set_active", "before")
AFTER_THE_AUDIENCE = ("storage.streams.audience", "StreamAudiences", "create", "after")


def _doomed_code(module: str, cls: str, method: str, when: str) -> str:
    return f"""
import os, signal
import storage.idempotency
storage.idempotency.CLAIM_TTL_S = {CLAIM_TTL_S}
import {module} as target
_original = target.{cls}.{method}
async def _dying(*args, **kwargs):
    if {when!r} == "after":
        await _original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
target.{cls}.{method} = _dying
from server.cli import main
raise SystemExit(main())
"""


@asynccontextmanager
async def doomed_node(
    redis_url: str, data_dir: Path, kill_at: tuple[str, str, str, str], **extra: str
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """A node (its own process, this checkout's code) that kills itself at ``kill_at``."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _doomed_code(*kill_at), "serve", "--port", str(port)],
        cwd=ROOT,
        env=node_env(data_dir, redis_url, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait, 10)
        if proc.stderr is not None:
            proc.stderr.close()


async def _post(url: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.post(url + path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def _cut_by_the_kill(url: str, path: str, body: Any, headers: dict[str, str]) -> None:
    """The first request: its node dies before it answers (the client sees the connection cut)."""
    with pytest.raises(aiohttp.ClientError):
        await _post(url, path, body, headers)


async def _resend(server: ServerUnderTest, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    """The client's resend to a live node, as long as the dead node's claim holds the key (409)."""
    started = time.monotonic()
    while True:
        status, answer = await _post(server.url, path, body, headers)
        if status != 409:
            return status, answer
        assert time.monotonic() - started < CLAIM_TTL_S + 15, "the dead node's claim was never freed"
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Route:
    """One create taking an Idempotency-Key: how to send it and what it answers."""

    path: str
    body: Any
    token: bool  # the pattern API takes none (its caller is the address)
    made: int  # sessions one create makes (a stream makes its audience session too)
    id_of: Callable[[Any], str]
    status: int = 201


ROUTES = {
    "voice_create": Route("/voicebot/create_session", {"session_name": "once"}, True, 1, lambda a: a["session_id"]),
    "stream_create": Route("/api/streams", {"title": "Raid night"}, True, 2, lambda a: a["session"]["session_id"]),
    "pattern_create": Route("/api/sessions", {"name": "Beat"}, False, 1, lambda a: a["id"]),
    "bot_start": Route(
        "/voicebot/bot/command", {"text": "/start Once"}, True, 1, lambda a: a["active_session"]["session_id"], 200
    ),
    "material": Route("/voicebot/materials", {"kind": "text", "text": "only once"}, True, 1, lambda a: a["session_id"]),
}


async def _sessions(redis: Redis, server: ServerUnderTest) -> int:
    return int(await redis.zcard(server.services.keys.all_sessions()))


def _headers(server: ServerUnderTest, route: Route, key: str) -> dict[str, str]:
    auth = {"Authorization": f"Bearer {server.token('alice')}"} if route.token else {}
    return {**auth, "Idempotency-Key": key}


@pytest.mark.parametrize("name", sorted(ROUTES))
async def test_a_create_whose_node_died_before_keeping_its_answer_is_made_once(
    name: str, server: ServerUnderTest, redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    route = ROUTES[name]
    headers = _headers(server, route, f"kill-{uuid.uuid4()}")
    before = await _sessions(redis, server)
    async with doomed_node(redis_process.url, tmp_path / "doomed", BEFORE_THE_ANSWER) as (url, proc):
        await _cut_by_the_kill(url, route.path, route.body, headers)
        assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGKILL
    assert await _sessions(redis, server) == before + route.made, "the dead node made nothing"
    status, answer = await _resend(server, route.path, route.body, headers)
    assert status == route.status, answer
    assert await _sessions(redis, server) == before + route.made, "the resend made a second one"
    made = route.id_of(answer)
    assert await redis.zscore(server.services.keys.all_sessions(), made) is not None
    if name == "material":
        assert [m["text"] for m in await server.services.voice.materials(made, limit=10)] == ["only once"]
        assert answer["created_session"] is True and answer["count"] == 1
    if name in {"voice_create", "bot_start", "material"}:  # made active, as the first would have
        assert await server.services.voice.active_id("alice") == made
    # And a repeat now is the kept answer of the resend.
    again = await _post(server.url, route.path, route.body, headers)
    assert again == (status, answer)


async def test_a_resend_with_another_body_is_answered_the_object_made(
    server: ServerUnderTest, redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """The key names the request (PROTOCOL): a resend whose body differs gets the first one's
    object, as it gets the first answer when one was kept."""
    route = ROUTES["stream_create"]
    headers = _headers(server, route, f"kill-{uuid.uuid4()}")
    async with doomed_node(redis_process.url, tmp_path / "doomed", BEFORE_THE_ANSWER) as (url, _):
        await _cut_by_the_kill(url, route.path, {"title": "First title"}, headers)
    status, answer = await _resend(server, route.path, {"title": "Another title"}, headers)
    assert status == 201 and answer["session"]["title"] == "First title"
    assert len(await redis.zrange(server.services.keys.user_streams("alice"), 0, -1)) == 1


async def test_a_voice_create_killed_before_it_was_made_active_is_made_active_by_the_resend(
    server: ServerUnderTest, redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    route = ROUTES["voice_create"]
    headers = _headers(server, route, f"kill-{uuid.uuid4()}")
    async with doomed_node(redis_process.url, tmp_path / "doomed", BEFORE_SET_ACTIVE) as (url, _):
        await _cut_by_the_kill(url, route.path, route.body, headers)
    made = [str(s) for s in await redis.zrange(server.services.keys.user_sessions("alice"), 0, -1)]
    assert len(made) == 1 and await server.services.voice.active_id("alice") is None
    status, answer = await _resend(server, route.path, route.body, headers)
    assert (status, answer["session_id"]) == (201, made[0])
    assert await server.services.voice.active_id("alice") == made[0]
    assert len(await redis.zrange(server.services.keys.user_sessions("alice"), 0, -1)) == 1


async def test_a_stream_create_killed_between_its_audience_and_its_stream_makes_one_of_each(
    server: ServerUnderTest, redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    route = ROUTES["stream_create"]
    headers = _headers(server, route, f"kill-{uuid.uuid4()}")
    before = await _sessions(redis, server)
    async with doomed_node(redis_process.url, tmp_path / "doomed", AFTER_THE_AUDIENCE) as (url, _):
        await _cut_by_the_kill(url, route.path, route.body, headers)
    assert await redis.zcard(server.services.keys.user_streams("alice")) == 1  # indexed, not yet written
    status, answer = await _resend(server, route.path, route.body, headers)
    assert status == 201, answer
    stream = await StreamSessions(server.services.store).get(answer["session"]["session_id"])
    assert stream is not None and await redis.exists(server.services.keys.session(stream.audience_id))
    assert await _sessions(redis, server) == before + 2  # the stream and its audience: no orphan


@pytest.mark.parametrize("action", ["remix", "publish"])
async def test_a_remix_or_publish_whose_node_died_makes_one_copy(
    action: str, server: ServerUnderTest, redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    status, parent = await _post(server.url, "/api/sessions", {"name": "Parent"}, {})
    assert status == 201
    path = f"/api/sessions/{parent['id']}/{action}"
    headers = {"Idempotency-Key": f"kill-{uuid.uuid4()}"}
    before = await _sessions(redis, server)
    async with doomed_node(redis_process.url, tmp_path / "doomed", BEFORE_THE_ANSWER) as (url, _):
        await _cut_by_the_kill(url, path, None, headers)
    status, answer = await _resend(server, path, None, headers)
    assert status == 201, answer
    assert await _sessions(redis, server) == before + 1
    children = await redis.zrange(server.services.keys.remix_children(parent["id"]), 0, -1)
    assert children == [answer["id"]]
    if action == "remix":
        assert answer["remixedFrom"] == parent["id"]
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/sessions/{parent['id']}") as r:
            assert (await r.json())["remixCount"] == 1  # counted once
    else:
        assert answer["sourceId"] == parent["id"]
