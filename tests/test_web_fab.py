"""The FAB in real Chromium with its fake microphone, against a real server."""

from __future__ import annotations

import asyncio
import json

from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest

WATCH_STATUSES = """
(selector) => {
  window.__statuses = [];
  const target = document.querySelector(selector);
  const note = () => {
    const status = target.dataset.status;
    if (window.__statuses.at(-1) !== status) window.__statuses.push(status);
  };
  note();
  new MutationObserver(note).observe(target, { attributes: true, attributeFilter: ["data-status"] });
}
"""


async def fab_ready(page: Page) -> None:
    await expect(page.locator("#fab-new")).to_be_enabled()


async def test_new_cut_pause_resume_done_with_a_second_tab_watching(
    server: ServerUnderTest, browser: Browser, tab: Tab
) -> None:
    token = server.token("alice")
    await tab.use_token(token)
    page = await tab.open("/")
    await fab_ready(page)
    assert [await b.text_content() for b in await page.locator(".fab-buttons button").all()] == [
        "New",
        "Rec",
        "Cut",
        "Pause",
        "Done",
    ]
    for action in ("cut", "pause"):
        await expect(page.locator(f"#fab-{action}")).to_be_disabled()

    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    session_id = await server.services.voice.active_id("alice")
    assert session_id is not None

    second = await new_tab(browser, server)
    try:
        await second.use_token(token)
        watcher = await second.open(f"/session/{session_id}")
        await expect(watcher.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(watcher.locator("#status-pictogram")).to_have_attribute("data-status", "recording")
        await watcher.evaluate(WATCH_STATUSES, "#status-pictogram")

        await asyncio.sleep(1.5)  # some audio
        await page.locator("#fab-cut").click()
        await expect(watcher.locator("#chunk-list li")).to_have_count(1)
        chunks = await server.services.redis.hgetall(server.services.keys.voice_chunks(session_id))
        [chunk] = [json.loads(v) for v in chunks.values()]
        assert chunk["duration_ms"] > 500 and chunk["duration_source"] == "webm", chunk
        await expect(watcher.locator("#chunk-list li audio")).to_have_count(1)
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")

        await asyncio.sleep(0.5)
        await page.locator("#fab-pause").click()
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
        await expect(page.locator("#fab-rec")).to_have_text("Resume")
        await expect(watcher.locator("#chunk-list li")).to_have_count(2)

        await page.locator("#fab-rec").click()
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
        await asyncio.sleep(0.6)
        await page.locator("#fab-done").click()
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", "closed")
        await expect(page.locator("#fab-message")).to_contain_text("Done × 1")

        await expect(watcher.locator("#status-pictogram")).to_have_attribute("data-status", "closed")
        await expect(watcher.locator("#done-count")).to_have_text("1")
        await expect(watcher.locator("#chunk-list li")).to_have_count(3)
        seen = await watcher.evaluate("window.__statuses")
        assert seen == ["recording", "cutting", "recording", "paused", "recording", "final_uploading", "closed"], seen
        assert not second.errors, second.errors
    finally:
        await second.page.context.close()

    session = await server.services.voice.get(session_id)
    assert session is not None
    assert (session.status, session.done_count, session.chunk_count) == ("closed", 1, 3)
    assert session.audio_ms > 1500
    assert await server.services.voice.active_id("alice") is None
