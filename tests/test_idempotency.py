"""Retries that never duplicate (issue 20, finding 5): Telegram update ids and Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict
import pytest_asyncio
from redis.asyncio import Redis

from tests.audio_samples import webm
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.patterns.test_http import full_state
from tests.voice.test_telegram import bot_settings, command, message, post
from tests.voice.uploads import chunk_form, upload


@pytest_asyncio.fixture
async def bot(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(redis_process.url, tmp_path, **bot_settings(voice_telegram_bot_username="sessionhub_bot"))
    yield srv
    await srv.stop()


async def _sessions_of(server: ServerUnderTest, user: str) -> list[str]:
    return [str(s) for s in await server.services.redis.zrange(server.services.keys.user_sessions(user), 0, -1)]


async def test_one_telegram_update_delivered_three_times_creates_one_session(bot: ServerUnderTest) -> None:
    update = {"update_id": 7001, "message": command("/start Once")}
    replies = [await post(bot, update) for _ in range(3)]
    assert all(status == 200 for status, _ in replies)
    assert replies[1][1] == replies[0][1] == replies[2][1]  # the repeats get the first reply
    assert len(await _sessions_of(bot, "alice")) == 1


async def test_five_parallel_deliveries_store_one_material(bot: ServerUnderTest) -> None:
    await post(bot, {"update_id": 7100, "message": command("/start")})
    update = {"update_id": 7101, "message": message(text="only once")}
    results = await asyncio.gather(*(post(bot, update) for _ in range(5)))
    assert all(status == 200 for status, _ in results)
    session_id = await bot.services.voice.active_id("alice")
    assert session_id is not None
    materials = await bot.services.voice.materials(session_id, limit=10)
    assert [m["text"] for m in materials] == ["only once"]


async def test_a_command_for_another_bot_is_ignored(bot: ServerUnderTest) -> None:
    await post(bot, {"update_id": 7200, "message": command("/start")})
    active = await bot.services.voice.active_id("alice")
    status, reply = await post(bot, {"update_id": 7201, "message": command("/done@SomeOtherBot")})
    assert (status, reply) == (200, None)
    assert await bot.services.voice.active_id("alice") == active
    status, reply = await post(bot, {"update_id": 7202, "message": command("/done@SessionHub_Bot")})
    assert status == 200 and reply["text"].startswith("Сессия закрыта")


async def _post(server: ServerUnderTest, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as http, http.post(server.url + path, json=body, headers=headers) as r:
        return r.status, await r.json(), r.headers.get("Idempotent-Replayed", "")


async def test_an_idempotency_key_makes_a_voice_create_safe_to_retry(server: ServerUnderTest) -> None:
    headers = {"Authorization": f"Bearer {server.token('alice')}", "Idempotency-Key": str(uuid.uuid4())}
    first = await _post(server, "/voicebot/create_session", {"session_name": "once"}, headers)
    again = await _post(server, "/voicebot/create_session", {"session_name": "once"}, headers)
    assert first[0] == again[0] == 201 and first[1] == again[1] and again[2] == "true"
    assert len(await _sessions_of(server, "alice")) == 1
    # Another user's same key is another request.
    bobs = {**headers, "Authorization": f"Bearer {server.token('bob')}"}
    assert (await _post(server, "/voicebot/create_session", {}, bobs))[1]["session_id"] != first[1]["session_id"]


async def test_parallel_retries_with_one_key_apply_once(server: ServerUnderTest) -> None:
    headers = {"Authorization": f"Bearer {server.token('alice')}", "Idempotency-Key": str(uuid.uuid4())}
    results = await asyncio.gather(
        *(_post(server, "/voicebot/materials", {"kind": "text", "text": "x"}, headers) for _ in range(5))
    )
    assert {status for status, _, _ in results} <= {200, 201, 409}
    stored = [
        m for s in await _sessions_of(server, "alice") for m in await server.services.voice.materials(s, limit=10)
    ]
    assert len(stored) == 1


async def test_a_failed_first_request_leaves_its_key_free(server: ServerUnderTest) -> None:
    headers = {"Authorization": f"Bearer {server.token('alice')}", "Idempotency-Key": str(uuid.uuid4())}
    status, body, _ = await _post(server, "/voicebot/create_session", {"session_name": "a\u202eb"}, headers)
    assert status == 400 and body["error"] == "invalid_payload"
    status, _, replayed = await _post(server, "/voicebot/create_session", {"session_name": "fine"}, headers)
    assert status == 201 and replayed == ""


async def test_a_bad_key_is_refused(server: ServerUnderTest) -> None:
    headers = {"Authorization": f"Bearer {server.token('alice')}", "Idempotency-Key": "no spaces allowed"}
    status, body, _ = await _post(server, "/voicebot/create_session", {}, headers)
    assert (status, body["error"]) == (400, "invalid_payload")
    assert await _sessions_of(server, "alice") == []


async def test_two_keys_on_one_request_are_refused(server: ServerUnderTest) -> None:
    """Two Idempotency-Key headers: which one a retry will carry is anyone's guess, so the request
    is refused whole (nothing made) rather than kept under the first."""
    headers = CIMultiDict(
        [
            ("Authorization", f"Bearer {server.token('alice')}"),
            ("Idempotency-Key", str(uuid.uuid4())),
            ("Idempotency-Key", str(uuid.uuid4())),
        ]
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + "/voicebot/create_session", json={}, headers=headers) as r,
    ):
        assert (r.status, (await r.json())["error"]) == (400, "invalid_payload")
    assert await _sessions_of(server, "alice") == []


async def test_pattern_create_and_remix_with_a_key(server: ServerUnderTest) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await _post(server, "/api/sessions", {}, key)
    again = await _post(server, "/api/sessions", {}, key)
    assert first[0] == again[0] == 201 and first[1]["id"] == again[1]["id"]
    remix_key = {"Idempotency-Key": str(uuid.uuid4())}
    one = await _post(server, f"/api/sessions/{first[1]['id']}/remix", None, remix_key)
    two = await _post(server, f"/api/sessions/{first[1]['id']}/remix", None, remix_key)
    assert one[0] == 201 and one[1]["id"] == two[1]["id"]
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/sessions/{first[1]['id']}") as r:
        assert (await r.json())["remixCount"] == 1
    # Publishing makes a copy: a retried publish with its key makes one.
    publish_key = {"Idempotency-Key": str(uuid.uuid4())}
    published = [await _post(server, f"/api/sessions/{first[1]['id']}/publish", None, publish_key) for _ in range(2)]
    assert published[0][0] == published[1][0] == 201, published
    assert published[0][1]["id"] == published[1][1]["id"] and published[1][2] == "true"


async def test_a_pattern_save_sent_again_with_its_key_is_answered_as_the_first(server: ServerUnderTest) -> None:
    """An auto-save applied whose answer was lost, sent again as it was (its If-Match, now stale
    by its own change): without a key it is 412, which a page cannot tell from another player's
    change; with the first's key it is the first's 200, and nothing is applied again."""
    created = await _post(server, "/api/sessions", {}, {})
    url = f"{server.url}/api/sessions/{created[1]['id']}"
    state = full_state()
    async with aiohttp.ClientSession() as http:

        async def send(method: str, body: Any, headers: dict[str, str]) -> tuple[int, Any, str | None, str]:
            async with http.request(method, url, json=body, headers=headers) as r:
                return r.status, await r.json(), r.headers.get("Idempotent-Replayed"), r.headers.get("ETag", "")

        async with http.get(url) as r:
            etag = r.headers["ETag"]
        keyed = {"If-Match": etag, "Idempotency-Key": str(uuid.uuid4())}
        put, put_again = [await send("PUT", {"state": state}, keyed) for _ in range(2)]
        assert put[0] == put_again[0] == 200 and put[1] == put_again[1], (put, put_again)
        assert put[2] is None and put_again[2] == "true"
        assert (await send("PUT", {"state": state}, {"If-Match": etag}))[0] == 412  # the same, without the key

        keyed = {"If-Match": put[3], "Idempotency-Key": str(uuid.uuid4())}
        patch, patch_again = [await send("PATCH", {"name": "Renamed"}, keyed) for _ in range(2)]
        assert patch[0] == patch_again[0] == 200 and patch[1] == patch_again[1], (patch, patch_again)
        assert patch_again[2] == "true"
        async with http.get(url) as r:
            stored = await r.json()
    assert stored["name"] == "Renamed" and stored["state"]["tempo"] == state["tempo"]


async def test_a_key_is_kept_per_route(server: ServerUnderTest) -> None:
    """PROTOCOL.md, Retries: the same key on another route is another request; on the remix
    route it is the same request whatever session the path names."""
    headers = {"Authorization": f"Bearer {server.token('alice')}", "Idempotency-Key": str(uuid.uuid4())}
    voice = await _post(server, "/voicebot/create_session", {}, headers)
    stream = await _post(server, "/api/streams", {"title": "t"}, headers)
    assert (voice[0], voice[2], stream[0], stream[2]) == (201, "", 201, "")
    assert stream[1]["session"]["session_id"] != voice[1]["session_id"]
    parents = [(await _post(server, "/api/sessions", {}, {}))[1]["id"] for _ in range(2)]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await _post(server, f"/api/sessions/{parents[0]}/remix", None, key)
    other = await _post(server, f"/api/sessions/{parents[1]}/remix", None, key)
    assert other[1] == first[1] and other[1]["remixedFrom"] == parents[0] and other[2] == "true"


async def test_a_chunk_upload_with_a_key(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    token = server.token("alice")
    first = await upload(server, token, chunk_form(session_id, webm(600)), headers=headers)
    again = await upload(server, token, chunk_form(session_id, webm(600)), headers=headers)
    assert first[0] == again[0] == 201 and first[1] == again[1]


# The claim lifetime of the node killed mid-request (storage.idempotency.CLAIM_TTL_S, 10 s by
# default): renewed every third of it, and run out this long after the kill.
SHORT_CLAIM_TTL_S = 3


async def test_a_key_whose_node_was_killed_mid_request_is_free_again_soon(
    server: ServerUnderTest, redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """A node killed (-9) while it runs a request leaves the request's claim behind: it runs out
    within the claim's short lifetime (a running request renews it), and the client's retry on
    another node then runs for real instead of being answered ``409`` for two minutes.

    The doomed node claims for ``SHORT_CLAIM_TTL_S``, not the default 10 s, whose run-out the test
    would otherwise wait for: the same code, its lifetime set where it is read (checked below)."""
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import free_port
    from tests.test_processes import ROOT, _wait_ready, node_env

    port = free_port()
    (tmp_path / "doomed").mkdir()
    serve_with_short_claims = (
        f"import storage.idempotency as claims; claims.CLAIM_TTL_S = {SHORT_CLAIM_TTL_S}; "
        "from server.cli import main; raise SystemExit(main())"
    )
    doomed = subprocess.Popen(
        [sys.executable, "-c", serve_with_short_claims, "serve", "--port", str(port)],
        cwd=ROOT,
        env=node_env(tmp_path / "doomed", redis_process.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    key = f"kill-{uuid.uuid4()}"
    claim = server.services.keys.idempotent_answer("stream_create", "u:alice", key)
    writer = None
    try:
        await _wait_ready(f"http://127.0.0.1:{port}", doomed)
        # A create whose body is still coming: the node has claimed the key and waits for the rest.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"title": "Raid night"}'
        writer.write(
            b"POST /api/streams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {server.token('alice')}\r\nIdempotency-Key: {key}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
        await writer.drain()
        started = time.monotonic()
        while await redis.get(claim) != "":
            assert time.monotonic() - started < 10, "the node never claimed the key"
            await asyncio.sleep(0.02)
        # The running request keeps its claim alive: its lifetime goes up again.
        last_ttl = await redis.pttl(claim)
        assert 0 < last_ttl <= SHORT_CLAIM_TTL_S * 1000, "the node did not claim for the short lifetime"
        while (ttl := await redis.pttl(claim)) <= last_ttl:
            assert ttl > 0 and time.monotonic() - started < SHORT_CLAIM_TTL_S, (
                "the running request did not renew its claim"
            )
            last_ttl = ttl
            await asyncio.sleep(0.05)
        doomed.send_signal(signal.SIGKILL)
        await asyncio.to_thread(doomed.wait, 10)
        killed = time.monotonic()
        while True:
            status, answer, _ = await _post(
                server, "/api/streams", {"title": "Raid night"}, {"Idempotency-Key": key, **_auth(server)}
            )
            if status != 409:
                break
            assert time.monotonic() - killed < SHORT_CLAIM_TTL_S + 10, "the dead node's claim was never freed"
            await asyncio.sleep(0.2)
        assert status == 201, answer
    finally:
        if writer is not None:
            writer.close()
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(10)


def _auth(server: ServerUnderTest) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('alice')}"}
