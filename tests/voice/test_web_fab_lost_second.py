"""In Chromium: a chunk the server acknowledged in the last second its Redis lost is sent again.

A crash under `appendfsync everysec` loses the last second of writes: a chunk answered 201 in it
was gone from the session, and the FAB had let it go after the answer, so it existed nowhere
(audit "lastsecond"). The FAB keeps what it uploaded for a few seconds; when the session's history
goes back (a new epoch), it sends them again and the server stores each once. Here the lost second
is a restore of a backup taken just before the chunk was answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from playwright.async_api import Browser, expect
from redis.exceptions import RedisError

from handlers.voice.chunks import chunk_repository
from storage.clock import Clock
from tests.browser import new_tab
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.identity.test_restored_redis import backed_up, restore
from tests.identity.test_restored_redis import own_redis as own_redis  # a fixture, shared
from tests.voice.test_web_fab_held import until_chunks
from tests.voice.test_web_session_follow import until_audio_is_kept

BOUND_S = 20.0


@pytest_asyncio.fixture
async def node(own_redis: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(own_redis.url, tmp_path / "node", clock=Clock())
    yield srv
    await srv.stop()


async def starts(node: ServerUnderTest, session_id: str) -> list[int]:
    """The session's chunks' starts; none while Redis is coming back (its restart drops links)."""
    try:
        return [c["start_ms"] for c in await chunk_repository(node.services).list(session_id, limit=100)]
    except RedisError:
        return []


async def test_a_chunk_acknowledged_in_the_lost_second_is_sent_again(
    node: ServerUnderTest, own_redis: RedisProcess, browser: Browser, tmp_path: Path
) -> None:
    tab = await new_tab(browser, node)
    try:
        await tab.use_token(node.token("alice"))
        session_id = await node.create_session("alice")
        await node.services.voice.set_active("alice", session_id)
        page = await tab.open("/")
        await expect(page.locator("#fab-rec")).to_be_enabled()
        await page.locator("#fab-rec").click()
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
        await until_audio_is_kept(page)
        await page.locator("#fab-cut").click()
        await until_chunks(node, session_id, 1)
        backup = await backed_up(own_redis, node.services.redis, tmp_path)  # the last durable state

        await until_audio_is_kept(page)
        await page.locator("#fab-cut").click()  # answered 201, then lost with the last second
        await until_chunks(node, session_id, 2)
        both = await starts(node, session_id)
        restore(own_redis, backup)
        deadline = asyncio.get_running_loop().time() + BOUND_S
        while not set(both) <= set(await starts(node, session_id)):
            assert asyncio.get_running_loop().time() < deadline, await starts(node, session_id)
            await asyncio.sleep(0.1)
        assert sorted(await starts(node, session_id))[:2] == sorted(both)  # each once
    finally:
        await tab.page.context.close()
