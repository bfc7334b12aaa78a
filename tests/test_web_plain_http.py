"""Pages reached by a LAN name over plain http: what a self-hosted server on a home network is.

Such a page is not a secure context (only https, localhost and loopback addresses are), so the
browser withholds the APIs of secure contexts, ``crypto.randomUUID`` among them. The host name
is mapped to the loopback server by Chromium's resolver: nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright, expect

from tests.browser import ACTION_TIMEOUT_MS, CHROMIUM_ARGS, LAUNCH_TIMEOUT_MS, Tab, chromium_path
from tests.helpers import ServerUnderTest
from tests.patterns.test_web import new_pattern

LAN_HOST = "sessionhub.lan.test"  # .test is reserved (RFC 2606): never a real name


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lan_browser() -> AsyncIterator[Browser]:
    """One Chromium for the module, its resolver mapping LAN_HOST to loopback (a context per test)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {LAN_HOST} 127.0.0.1"],
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def lan_tab(lan_browser: Browser, server: ServerUnderTest) -> AsyncIterator[Tab]:
    context = await lan_browser.new_context()
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    port = urlsplit(server.url).port
    opened = Tab(page=await context.new_page(), base_url=f"http://{LAN_HOST}:{port}")
    yield opened
    await context.close()
    assert not opened.errors, "the page reported errors:\n" + "\n".join(opened.errors + opened.console)


async def test_the_pages_are_not_secure_contexts_here(lan_tab: Tab) -> None:
    page = await lan_tab.open("/")
    assert await page.evaluate("window.isSecureContext") is False
    assert await page.evaluate("typeof crypto.randomUUID") == "undefined"


async def test_a_pattern_takes_a_new_track_over_plain_http(server: ServerUnderTest, lan_tab: Tab) -> None:
    session_id = await new_pattern(server)
    page = await lan_tab.open(f"/s/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await page.locator("#add-sample").select_option("synth:bass")
    await page.locator("#add-track").click()
    await expect(page.locator(".track-row")).to_have_count(2)


async def test_the_player_reports_a_play_over_plain_http(lan_tab: Tab) -> None:
    # A first visit: the page makes its guest identity and its device id itself.
    page = await lan_tab.open("/player")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    row = page.locator('li[data-item-id="demo-audiobook-1"]')
    await row.locator("button.play").click()
    await expect(row).to_have_attribute("data-last-action", "started")


@pytest.mark.parametrize("path", ["/", "/session", "/streams", "/patterns", "/history", "/api-docs"])
async def test_every_page_opens_without_an_error_over_plain_http(lan_tab: Tab, path: str) -> None:
    page = await lan_tab.open(path)
    await page.wait_for_load_state("networkidle")


async def test_the_fab_says_recording_needs_a_secure_page(server: ServerUnderTest, lan_tab: Tab) -> None:
    # Browsers give the microphone to secure contexts only: the FAB says so, not a TypeError.
    await lan_tab.use_token(server.token("alice"))
    page = await lan_tab.open("/")
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-message")).to_contain_text("https")
    assert await server.services.voice.active_id("alice") is None  # nothing made to record into
