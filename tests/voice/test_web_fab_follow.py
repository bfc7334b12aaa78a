"""Every tab and device of the user follows the active session: a recording started elsewhere
shows, and is not doubled by a second New or Rec (seed 002)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest

# The pages' check of the active session while idle (web/js/fab.js ACTIVE_CHECK_MS, session.js
# CATCH_UP_MS), with room for a busy machine.
CHECK_INTERVAL_MS = 15_000
CHECKED_MS = CHECK_INTERVAL_MS + 5_000
# Sooner than the interval: what the focus (or the page coming into view) brings at once.
AT_ONCE_MS = 5_000


async def press_new(page: Page) -> None:
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")


async def shows_a_recording_elsewhere(page: Page, timeout_ms: int = AT_ONCE_MS) -> None:
    """The FAB shows the other recorder's session, and offers nothing that would start a second
    one: Pause alone, which pauses the other recorder (test_web_fab_paused_elsewhere.py)."""
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording", timeout=timeout_ms)
    await expect(page.locator(".fab-label")).to_have_text("Recording elsewhere")
    for action in ("new", "rec", "cut", "done"):
        await expect(page.locator(f"#fab-{action}")).to_be_disabled()
    await expect(page.locator("#fab-pause")).to_have_attribute(
        "aria-label", "Pause the recording on the other tab or device"
    )


async def test_another_tabs_recording_shows_at_once_and_offers_no_second_one(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    first = await tab.open("/")
    await expect(first.locator("#fab-new")).to_be_enabled()
    await expect(first.locator(".fab-label")).to_have_text("No active session")
    second = await first.context.new_page()
    await second.goto(server.url + "/", wait_until="domcontentloaded")
    await press_new(second)
    session_id = await server.services.voice.active_id("alice")
    assert session_id is not None

    await shows_a_recording_elsewhere(first)
    await second.locator("#fab-pause").click()
    # Paused: the first tab may record into the active session again, or start a new one.
    await expect(first.locator("#fab-status")).to_have_attribute("data-status", "paused")
    await expect(first.locator(".fab-label")).to_have_text("Paused")
    await expect(first.locator("#fab-rec")).to_be_enabled()
    await expect(first.locator("#fab-new")).to_be_enabled()
    await first.locator("#fab-rec").click()
    await expect(first.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await shows_a_recording_elsewhere(second)
    assert [s.id for s in await server.services.voice.list_for_user("alice", limit=5)] == [session_id]
    await first.locator("#fab-pause").click()
    await expect(second.locator("#fab-status")).to_have_attribute("data-status", "paused")
    assert not tab.errors, tab.errors


@pytest.mark.parametrize("trigger", ["focus", "interval"])
async def test_another_devices_recording_shows_on_the_fab_and_on_session(
    server: ServerUnderTest, browser: Browser, tab: Tab, trigger: str
) -> None:
    """Device B has ``/session`` open (the page and its FAB) when device A presses New."""
    token = server.token("alice")
    await tab.use_token(token)
    watching = await tab.open("/session")
    await expect(watching.locator("#empty-state")).to_be_visible()
    await expect(watching.locator("#my-sessions-empty")).to_be_visible()
    device_a = await new_tab(browser, server)
    try:
        await device_a.use_token(token)
        recorder = await device_a.open("/")
        await press_new(recorder)
        session_id = await server.services.voice.active_id("alice")
        assert session_id is not None

        if trigger == "focus":  # the person turns to device B: it asks at once
            await watching.evaluate("window.dispatchEvent(new Event('focus'))")
        timeout_ms = AT_ONCE_MS if trigger == "focus" else CHECKED_MS
        await shows_a_recording_elsewhere(watching, timeout_ms)
        row = watching.locator(f"#my-session-list li[data-session-id='{session_id}']")
        await expect(row).to_have_count(1, timeout=timeout_ms)
        await expect(watching.locator("#session-id")).to_have_text(session_id, timeout=timeout_ms)
        await expect(watching.locator("#status-pictogram")).to_have_attribute("data-status", "recording")
        await expect(watching).to_have_url(f"{server.url}/session/{session_id}")

        await recorder.locator("#fab-pause").click()
        await expect(watching.locator("#status-pictogram")).to_have_attribute("data-status", "paused")
        await expect(row.locator(".pictogram")).to_have_attribute("data-status", "paused")
        await expect(watching.locator("#fab-rec")).to_be_enabled()
        assert not device_a.errors, device_a.errors
    finally:
        await device_a.page.context.close()
