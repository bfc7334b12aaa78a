"""An operator's deletion leaves nothing of a session behind, for every kind (SessionKind.on_delete)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from handlers.cleanups import retry_owed
from storage.admin.repository import AdminStore
from tests.audio_samples import webm
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest
from tests.listening.support import listener
from tests.admin.test_http import DAY_MS, LONG_TTL_S, admin_token, call, new_pattern
from tests.voice.uploads import chunk_form, upload


@pytest_asyncio.fixture
async def http(server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def keys_naming(server: ServerUnderTest, session_id: str) -> dict[str, int]:
    """Every key whose name holds ``session_id``, with its TTL in ms (-1: none)."""
    redis = server.services.redis
    found = [key async for key in redis.scan_iter(match=f"*{session_id}*", count=1000)]
    return {key: int(await redis.pttl(key)) for key in found}


async def assert_nothing_left(server: ServerUnderTest, session_id: str, *, marked: bool = False) -> None:
    """Only the log and its meta remain, expiring (a resuming client learns of the deletion), and,
    for an operator's deletion (``marked``; others may leave it too), the mark of why it went (a
    link opened later is told: handlers/session_gone.py), expiring in 30 days; no index holds the id."""
    from handlers.session_gone import GONE_KEPT_S

    keys, redis = server.services.keys, server.services.redis
    left = await keys_naming(server, session_id)
    gone = left.pop(keys.session_gone(session_id), None)
    assert gone is not None or not marked, left
    assert gone is None or 0 < gone <= GONE_KEPT_S * 1000, gone
    assert set(left) == {keys.log(session_id), keys.log_meta(session_id)}, left
    assert all(0 < ttl <= DAY_MS for ttl in left.values()), left
    for index in (keys.all_sessions(), keys.admin_created("*"), keys.admin_accessed("*"), keys.admin_remixes()):
        assert await redis.zscore(index, session_id) is None, index
    assert await redis.hget(keys.admin_kind_of(), session_id) is None
    assert await redis.hget(keys.cleanups(), session_id) is None  # nothing owed


def blob_files(server: ServerUnderTest) -> list[str]:
    root = server.services.voice.config.blob_dir
    if not root.exists():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


async def voice_with_chunks(server: ServerUnderTest, http: aiohttp.ClientSession, user: str) -> str:
    """A voice session made the user's active one over HTTP, with two uploaded chunks."""
    token = server.token(user, ttl_s=LONG_TTL_S)
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post("/voicebot/create_session", json={"session_name": "to delete"}, headers=headers) as response:
        assert response.status == 201, await response.text()
        session_id = str((await response.json())["session_id"])
    for start_ms in (1000, 5000):
        form = chunk_form(session_id, webm(1000 + start_ms), start_ms=start_ms, end_ms=start_ms + 1000)
        status, body = await upload(server, token, form)
        assert status == 201, body
    return session_id


async def assert_voice_forgotten(server: ServerUnderTest, session_id: str, user: str) -> None:
    keys, redis = server.services.keys, server.services.redis
    assert not [path for path in blob_files(server) if session_id in path]
    assert not (server.services.voice.config.blob_dir / session_id).exists()
    assert await redis.zscore(keys.user_sessions(user), session_id) is None
    assert await redis.zscore(keys.user_recent(user), session_id) is None
    assert await redis.get(keys.active_session(user)) is None
    await assert_nothing_left(server, session_id)


async def test_admin_delete_of_a_voice_session_removes_its_audio_user_list_and_active_pointer(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    session_id = await voice_with_chunks(server, http, "alice")
    kept = await voice_with_chunks(server, http, "bob")
    assert len([path for path in blob_files(server) if session_id in path]) == 2
    assert await server.services.voice.active_id("alice") == session_id
    status, answer = await call(http, "DELETE", f"/admin/sessions/{session_id}", token, {"confirm": session_id})
    assert status == 200, answer
    await assert_voice_forgotten(server, session_id, "alice")
    await assert_nothing_left(server, session_id, marked=True)  # why it went, for a link opened later
    assert len([path for path in blob_files(server) if kept in path]) == 2  # another's stays
    assert await server.services.voice.active_id("bob") == kept


async def test_bulk_orphan_delete_leaves_nothing_of_a_voice_session(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    orphans = [await voice_with_chunks(server, http, user) for user in ("alice", "bob")]
    server.services.clock.shift_ms = 100 * DAY_MS
    fresh = await voice_with_chunks(server, http, "carol")
    _, dry = await call(http, "POST", "/admin/orphans/delete", token, {"older_than_days": 90, "dry_run": True})
    assert dry["count"] == 2
    headers = {"Authorization": f"Bearer {token}"}
    body = {"older_than_days": 90, "confirm_count": 2}
    async with http.post("/admin/orphans/delete", json=body, headers=headers) as response:
        assert response.status == 200
        assert '"deleted":2' in await response.text()
    for session_id, user in zip(orphans, ("alice", "bob"), strict=True):
        await assert_voice_forgotten(server, session_id, user)
    assert len([path for path in blob_files(server) if fresh in path]) == 2
    assert await server.services.voice.active_id("carol") == fresh


async def test_admin_delete_of_a_stream_takes_its_audience_session_and_owner_list(
    server: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    token = admin_token(server)
    headers = {"Authorization": f"Bearer {server.token('alice', ttl_s=LONG_TTL_S)}"}
    async with http.post("/api/streams", json={"title": "raid night"}, headers=headers) as response:
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
    stream_id, audience_id = created["session"]["session_id"], created["session"]["audience_id"]
    async with http.post(f"/api/streams/{stream_id}/state", json={"action": "start"}, headers=headers) as response:
        assert response.status == 200, await response.text()
    viewer = await server.subscriber(clients, audience_id, user="bob")
    status, answer = await call(http, "DELETE", f"/admin/sessions/{stream_id}", token, {"confirm": stream_id})
    assert status == 200, answer
    await viewer.wait_for(lambda: bool(viewer.named("session_deleted")))
    assert viewer.named("session_deleted")[0]["data"]["stream_id"] == stream_id
    keys, redis = server.services.keys, server.services.redis
    assert await redis.zscore(keys.user_streams("alice"), stream_id) is None
    await assert_nothing_left(server, stream_id)
    await assert_nothing_left(server, audience_id)


async def test_admin_delete_of_a_listening_history_clears_the_owners_pointer(
    server: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    token = admin_token(server)
    player = await listener(server, clients, "alice", subscribe=False)
    ack = await player.report("track-1", "playing", position_s=0.0)
    assert ack["ok"] is True, ack
    keys, redis = server.services.keys, server.services.redis
    assert await redis.zscore(keys.listening_due(), player.history_id) is not None
    history_id = player.history_id
    status, answer = await call(http, "DELETE", f"/admin/sessions/{history_id}", token, {"confirm": history_id})
    assert status == 200, answer
    assert await redis.get(keys.listening_history("alice")) is None
    assert await redis.zscore(keys.listening_due(), history_id) is None
    await assert_nothing_left(server, history_id)
    again = await player.client.call("listening_history", {})
    assert again["ok"] is True and again["session_id"] != history_id  # a new, empty history


async def test_admin_delete_of_a_remix_leaves_its_parents_children(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    parent = await new_pattern(http)
    async with http.post(f"/api/sessions/{parent}/remix", json={}) as response:
        child = str((await response.json())["id"])
    keys, redis = server.services.keys, server.services.redis
    assert await redis.zrange(keys.remix_children(parent), 0, -1) == [child]
    status, answer = await call(http, "DELETE", f"/admin/sessions/{child}", token, {"confirm": child})
    assert status == 200, answer
    assert await redis.zrange(keys.remix_children(parent), 0, -1) == []
    assert int(await redis.hget(keys.session(parent), "remix_count")) == 1  # the count is history
    await assert_nothing_left(server, child)


async def test_a_follow_up_that_failed_is_owed_and_finished_later(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    keys, redis = server.services.keys, server.services.redis
    session_id = await voice_with_chunks(server, http, "alice")
    # The owner's list is not a sorted set any more: the follow-up's ZREM fails (WRONGTYPE).
    await redis.delete(keys.user_sessions("alice"))
    await redis.set(keys.user_sessions("alice"), "in the way")
    token = admin_token(server)
    status, answer = await call(http, "DELETE", f"/admin/sessions/{session_id}", token, {"confirm": session_id})
    assert status == 200 and answer["deleted"] == session_id, answer  # the deletion stands
    assert await redis.hget(keys.cleanups(), session_id) is not None
    assert [path for path in blob_files(server) if session_id in path]  # not removed yet
    assert await retry_owed(server.services, grace_s=0) == 0  # still in the way: still owed
    assert await redis.hget(keys.cleanups(), session_id) is not None
    await redis.delete(keys.user_sessions("alice"))
    assert await retry_owed(server.services, grace_s=60) == 0  # too recent: its deletion may be running
    assert await retry_owed(server.services, grace_s=0) == 1
    await assert_voice_forgotten(server, session_id, "alice")


async def test_the_owners_deletion_owes_its_follow_up_too(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    keys, redis = server.services.keys, server.services.redis
    session_id = await voice_with_chunks(server, http, "alice")
    await redis.delete(keys.user_sessions("alice"))
    await redis.set(keys.user_sessions("alice"), "in the way")
    headers = {"Authorization": f"Bearer {server.token('alice', ttl_s=LONG_TTL_S)}"}
    stranger = {"Authorization": f"Bearer {server.token('mallory', ttl_s=LONG_TTL_S)}"}
    async with http.delete(f"/voicebot/sessions/{session_id}", headers=stranger) as response:
        assert response.status == 403
    assert await redis.hget(keys.cleanups(), session_id) is None  # refused: nothing owed
    async with http.delete(f"/voicebot/sessions/{session_id}", headers=headers) as response:
        assert response.status == 200, await response.text()
    assert await redis.hget(keys.cleanups(), session_id) is not None
    await redis.delete(keys.user_sessions("alice"))
    assert await retry_owed(server.services, grace_s=0) == 1
    await assert_voice_forgotten(server, session_id, "alice")


async def test_a_remix_deleted_through_the_pattern_api_owes_its_place_among_the_parents_children(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    keys, redis = server.services.keys, server.services.redis
    parent = await new_pattern(http)
    async with http.post(f"/api/sessions/{parent}/remix", json={}) as response:
        child = str((await response.json())["id"])
    async with http.post(f"/api/sessions/{parent}/publish", json={}) as response:
        published = str((await response.json())["id"])
    async with http.delete(f"/api/sessions/{published}") as response:
        assert response.status == 403  # a published pattern cannot be deleted: nothing owed
    assert await redis.hget(keys.cleanups(), published) is None
    children = dict(await redis.zrange(keys.remix_children(parent), 0, -1, withscores=True))
    assert set(children) == {child, published}
    # The parent's children are not a sorted set any more: the follow-up's ZREM fails (WRONGTYPE).
    await redis.delete(keys.remix_children(parent))
    await redis.set(keys.remix_children(parent), "in the way")
    async with http.delete(f"/api/sessions/{child}") as response:
        assert response.status == 204  # the deletion stands
    assert await redis.hget(keys.cleanups(), child) is not None
    await redis.delete(keys.remix_children(parent))
    await redis.zadd(keys.remix_children(parent), children)
    assert await retry_owed(server.services, grace_s=0) == 1
    assert await redis.zrange(keys.remix_children(parent), 0, -1) == [published]
    await assert_nothing_left(server, child)


async def test_a_deletion_killed_between_its_two_steps_is_finished_by_every_nodes_retry(
    redis_process: Any, redis: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The retry passes are counted (observed, not replaced): the test waits for whole passes
    # instead of a fixed time that a loaded machine may spend before the first one.
    passes = {"done": 0}

    async def counted(services: Any) -> int:
        settled = await retry_owed(services)
        passes["done"] += 1
        return settled

    async def more_passes(count: int) -> None:
        want, deadline = passes["done"] + count, asyncio.get_running_loop().time() + 10
        while passes["done"] < want:
            assert asyncio.get_running_loop().time() < deadline, "no retry pass ran"
            await asyncio.sleep(0.02)

    monkeypatch.setattr("handlers.cleanups.retry_owed", counted)
    srv = await start_server(redis_process.url, tmp_path, cleanup_retry_s=0.1)
    try:
        async with aiohttp.ClientSession(base_url=srv.url) as http:
            deleted = await voice_with_chunks(srv, http, "alice")
            untouched = await voice_with_chunks(srv, http, "bob")
        s = srv.services
        store = AdminStore(redis=s.redis, keys=s.keys, log=s.log, clock=s.clock, sessions=s.sessions, orphan_days=90)
        keys, client = s.keys, s.redis
        record: dict[str, str] = await client.hgetall(keys.session(deleted))  # type: ignore[misc]
        await s.cleanups.note(deleted, record)  # as SessionDeleter.delete does, then killed
        voice = s.kinds.get("voice")
        assert voice is not None
        await store.delete(deleted, extra_keys=voice.owned_keys(deleted), actor="root")
        bob: dict[str, str] = await client.hgetall(keys.session(untouched))  # type: ignore[misc]
        await s.cleanups.note(untouched, bob)  # killed before its script: nothing was deleted
        await more_passes(2)  # a whole pass after both were noted
        assert await client.hlen(keys.cleanups()) == 2  # younger than the grace period
        s.clock.shift_ms = 61_000
        deadline = asyncio.get_running_loop().time() + 5
        while await client.hlen(keys.cleanups()):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        await assert_voice_forgotten(srv, deleted, "alice")
        assert len([path for path in blob_files(srv) if untouched in path]) == 2
        assert await s.voice.active_id("bob") == untouched
    finally:
        await srv.stop()
