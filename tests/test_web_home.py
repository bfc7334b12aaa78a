"""The landing page in a real browser: navigation, capability entries, recent sessions of every kind."""

from __future__ import annotations

import re

import aiohttp
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.browser import UNCONFIRMED_CREATE, Tab, lose_answers, new_tab
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.voice.test_web_session import XSS_NAME


async def test_landing_page_lists_my_recent_sessions(server: ServerUnderTest, tab: Tab) -> None:
    older = await server.create_session("alice", "Morning notes")
    newer = await server.create_session("alice", "Evening notes")
    await server.create_session("bob", "Not mine")
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")

    items = page.locator("#recent-list li")
    await expect(items).to_have_count(2)
    await expect(items.nth(0).locator("a")).to_have_text("Evening notes")
    await expect(items.nth(0).locator("a")).to_have_attribute("href", f"/session/{newer}")
    await expect(items.nth(1).locator("a")).to_have_attribute("href", f"/session/{older}")
    await expect(items.nth(0).locator(".kind-badge")).to_have_text("voice")
    await expect(page.locator("nav.nav a")).to_have_count(await page.locator("article.capability").count())
    assert not tab.errors, tab.errors


async def test_a_first_visit_lists_nothing_and_mints_no_guest(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/")
    await expect(page.locator("#recent-empty")).to_be_visible()
    assert await tab.stored_token() is None


async def test_recent_session_titles_are_text(server: ServerUnderTest, browser: Browser) -> None:
    await server.create_session("alice", XSS_NAME)
    unprotected = await new_tab(browser, server, bypass_csp=True)
    try:
        await unprotected.use_token(server.token("alice"))
        page = await unprotected.open("/")
        await expect(page.locator("#recent-list li a")).to_have_text(XSS_NAME)
        assert await page.locator("#recent-list img").count() == 0
        assert await page.evaluate("typeof window.__xss") == "undefined"
    finally:
        await unprotected.page.context.close()


async def test_a_first_visits_recording_is_listed_at_once(server: ServerUnderTest, tab: Tab) -> None:
    """The recorder's New on a first visit makes a guest and a session: the list read at load (no
    identity then) said "No sessions yet." beside the recording until a reload (audit returning)."""
    page = await tab.open("/")
    await expect(page.locator("#recent-empty")).to_be_visible()
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await expect(page.locator("#recent-list li")).to_have_count(1)
    await expect(page.locator("#recent-empty")).to_be_hidden()
    await page.locator("#fab-pause").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
    assert not tab.errors, tab.errors


async def test_a_short_guest_retention_is_said_in_words(
    redis_process: RedisProcess, browser: Browser, tmp_path: Path
) -> None:
    """A guest kept a minute was told "come back at least every 1 minutes" (audit returning)."""
    server = await start_server(redis_process.url, tmp_path, guest_idle_s=60)
    try:
        tab = await new_tab(browser, server)
        try:
            page = await tab.open("/")
            await page.locator("#session-name-input").fill("Short stay")
            await page.locator("#new-session").click()
            await expect(page).to_have_url(re.compile(r"/session/"))
            await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
            await page.locator("#identity-name").click()
            await expect(page.locator("#identity-retention")).to_contain_text("at least every 1 minute;")
        finally:
            await tab.page.context.close()
    finally:
        await server.stop()


async def test_a_new_voice_session_pressed_again_after_its_answers_were_lost_is_one(
    server: ServerUnderTest, tab: Tab
) -> None:
    """The network gone past the page's two resends: "Could not create a session: The server
    cannot be reached.", and the press again made a second session (audit lostcreates)."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    seen = await lose_answers(page, "**/voicebot/create_session", count=3)
    await page.locator("#session-name-input").fill("Morning notes")
    await page.locator("#new-session").click()
    await expect(page.locator("#index-error")).to_have_text(UNCONFIRMED_CREATE)
    await page.locator("#new-session").click()
    made = seen.lost[0]["session_id"]
    await expect(page).to_have_url(re.compile(f"/session/{made}$"))
    assert len(seen.keys) == 4 and seen.keys[0] and len(set(seen.keys)) == 1
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/me/sessions", headers=headers) as r:
        mine = await r.json()
    assert [s["session_id"] for s in mine["sessions"]] == [made], mine
    tab.errors.clear()  # the lost answers are console errors by design
