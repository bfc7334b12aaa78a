"""In Chromium: the recorder says so when the server's disk is full, and waits as the server asks.

An audit ran the server on a small disk: every chunk upload was refused ``503 unavailable``
(``storage_full``, ``retry_after_s`` 60, "disk is nearly full"), and the FAB only said "Upload
failed; retrying in 1 s.", then 2, 4, 8 s, sending the chunk again each time (and again at every
cut). Now it says what is wrong in a person's words, keeps recording and queueing, and sends
nothing before the server's ``retry_after_s`` has passed (bounded); the browser coming back
online sends at once. A ``rate_limited`` refusal's ``retry_after_s`` is waited for the same way.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, Route, expect
from redis.asyncio import Redis

from tests.browser import Tab
from tests.conftest import start_server
from tests.voice.test_web_fab_closed_elsewhere import recording_on_a_new_session
from tests.helpers import RedisProcess, ServerUnderTest
from tests.voice.test_web_fab_held import until_chunks
from tests.voice.test_web_session_follow import until_audio_is_kept

pytestmark = pytest.mark.timeout(180)

GIB = 1024**3
DISK_FULL = "The server's disk is full: your recording is kept on this device and sent when there is room"
# Before, the FAB tried again after 1 s and 2 s: no try may come within this while it waits 60 s.
QUIET_S = 4.0


@pytest_asyncio.fixture
async def server(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose disk reserve is above the disk's free bytes: every chunk upload is refused
    ``storage_full`` before its body is read (the audit's 30 MiB tmpfs)."""
    free = shutil.disk_usage(tmp_path).free
    full = await start_server(redis_process.url, tmp_path, voice_disk_reserve_bytes=free + 1024 * GIB)
    yield full
    await full.stop()


async def recording(tab: Tab, server: ServerUnderTest) -> tuple[Page, str]:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    return page, await recording_on_a_new_session(page, server)


def uploads_seen(page: Page) -> list[float]:
    """When each chunk upload was sent (loop time), as the page sends them."""
    sent: list[float] = []
    loop = asyncio.get_running_loop()
    page.on("request", lambda r: sent.append(loop.time()) if "/voicebot/chunks" in r.url else None)
    return sent


async def test_a_full_disk_is_said_in_plain_words_recording_goes_on_and_the_server_is_not_hammered(
    server: ServerUnderTest, tab: Tab, redis_process: RedisProcess, tmp_path: Path
) -> None:
    page, session_id = await recording(tab, server)
    sent = uploads_seen(page)
    await page.locator("#fab-cut").click()

    message = page.locator("#fab-message")
    await expect(message).to_contain_text(DISK_FULL)
    await expect(message).to_contain_text("next try in 60 s")
    await expect(page.locator("#fab-pending")).to_have_text("1 upload pending")
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    assert len(sent) == 1, sent
    await until_audio_is_kept(page)
    await page.locator("#fab-cut").click()  # the next chunk is queued, not sent into the full disk
    await expect(page.locator("#fab-pending")).to_have_text("2 uploads pending")
    await asyncio.sleep(QUIET_S)
    assert len(sent) == 1, f"sent again within {QUIET_S} s of a 60 s retry_after_s: {sent}"
    await expect(message).to_contain_text(DISK_FULL)
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")

    # Room again (files deleted; here another node with room): the browser back online sends now.
    roomy = await start_server(redis_process.url, tmp_path, voice_disk_reserve_bytes=0)
    try:

        async def to_roomy(route: Route) -> None:
            answer = await route.fetch(url=route.request.url.replace(server.url, roomy.url))
            await route.fulfill(response=answer)

        await page.route("**/voicebot/chunks?*", to_roomy)
        await page.evaluate("window.dispatchEvent(new Event('online'))")
        await until_chunks(server, session_id, 2)
        await expect(page.locator("#fab-pending")).to_be_hidden()
        await expect(message).not_to_contain_text(DISK_FULL)
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
        await page.locator("#fab-pause").click()
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
        await until_chunks(server, session_id, 3)  # the paused chunk: no wait is owed any more
        await expect(page.locator("#fab-pending")).to_be_hidden()
    finally:
        await page.unroute("**/voicebot/chunks?*")
        await roomy.stop()


async def test_a_rate_limited_upload_waits_the_retry_after_the_server_names(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, tab: Tab
) -> None:
    roomy = await start_server(redis_process.url, tmp_path / "roomy", voice_disk_reserve_bytes=0)
    try:
        tab.base_url = roomy.url
        page, session_id = await recording(tab, roomy)
        sent = uploads_seen(page)
        refused = {"left": 1}

        async def refuse_once(route: Route) -> None:
            if refused["left"]:
                refused["left"] -= 1
                body = {"error": "rate_limited", "message": "too many uploads; wait a minute", "retry_after_s": 3}
                await route.fulfill(status=429, headers={"Retry-After": "3"}, body=json.dumps(body))
            else:
                await route.continue_()

        await page.route("**/voicebot/chunks?*", refuse_once)
        await page.locator("#fab-pause").click()
        await expect(page.locator("#fab-message")).to_contain_text(
            "The server takes no more uploads for now: your recording is kept on this device and sent in 3 s."
        )
        await until_chunks(roomy, session_id, 1)
        assert len(sent) == 2, sent
        assert sent[1] - sent[0] >= 2.9, f"tried again {sent[1] - sent[0]:.1f} s after a 3 s retry_after_s"
        await expect(page.locator("#fab-message")).not_to_contain_text("The server takes no more uploads")
    finally:
        await roomy.stop()
