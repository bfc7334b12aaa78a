"""In Chromium: a page left open on a session an operator deletes says so.

`DELETE /admin/sessions/<id>` (moderation, an orphan sweep) logs `session_deleted` on the
session's log (and the audience log of a stream). No page read it: the stream dashboard and its
viewers' Clip Moment pages went on showing the stream live, the pattern page its grid, the
recorder its session, and every press was answered 'no such session'."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from tests.admin.test_http import admin_token, call
from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest
from tests.voice.test_web_fab_held import paused_on_a_new_session

pytestmark = pytest.mark.timeout(180)


async def admin_delete(server: ServerUnderTest, session_id: str) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        status, answer = await call(
            http, "DELETE", f"/admin/sessions/{session_id}", admin_token(server), {"confirm": session_id}
        )
    assert status == 200, answer


async def test_the_dashboard_and_the_viewers_page_of_a_deleted_stream_say_so(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    await tab.use_token(server.token("alice"))
    dashboard = await tab.open("/streams")
    await dashboard.locator("#title-input").fill("raid night")
    await dashboard.locator("#create-button").click()
    await dashboard.wait_for_url("**/streams/*")
    await dashboard.locator("#action-start").click()
    await expect(dashboard.locator("#stream-state")).to_have_text("Live")
    stream_id = dashboard.url.rsplit("/", 1)[1]
    viewer = await new_tab(browser, server)
    try:
        await viewer.use_token(server.token("bob"))
        watch = viewer.page
        await watch.set_viewport_size({"width": 390, "height": 844})  # a viewer on a phone
        await watch.goto(await dashboard.locator("#viewer-link").input_value())
        await expect(watch.locator("#clip-button")).to_be_enabled()

        await admin_delete(server, stream_id)

        await expect(dashboard.locator("#page-error-title")).to_have_text("Stream deleted")
        await expect(dashboard.locator("#page-error-link")).to_have_attribute("href", "/streams")
        await expect(dashboard.locator("#dashboard")).to_be_hidden()
        await expect(dashboard.locator("#review")).to_be_hidden()
        await expect(watch.locator("#page-error-title")).to_have_text("Stream deleted")
        await expect(watch.locator("#page-error-message")).to_contain_text("it takes no more clips")
        await expect(watch.locator("#clip-button")).to_be_hidden()
        assert not tab.errors and not viewer.errors, (tab.errors, viewer.errors)
    finally:
        await viewer.page.context.close()


async def test_the_pattern_page_of_a_deleted_pattern_says_so(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/patterns")  # a new pattern, its page open
    await page.wait_for_url("**/s/*")
    await expect(page.locator("#connection")).to_have_text("Live")
    pattern_id = page.url.rsplit("/", 1)[1]

    await admin_delete(server, pattern_id)

    await expect(page.locator("#not-found")).to_be_visible()
    await expect(page.locator("#editor")).to_be_hidden()
    await expect(page.locator("#connection")).to_be_hidden()


async def test_the_recorder_paused_on_a_deleted_session_offers_new(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    session_id = await paused_on_a_new_session(page, server, "alice")

    await admin_delete(server, session_id)

    await expect(page.locator("#fab-message")).to_contain_text("This session was deleted elsewhere")
    await expect(page.locator("#sessionhub-fab")).to_contain_text("No active session")
    await expect(page.locator("#fab-rec")).to_have_text("Rec")
    await expect(page.locator("#fab-rec")).to_be_disabled()
    await expect(page.locator("#fab-done")).to_be_disabled()
    await expect(page.locator("#fab-new")).to_be_enabled()


async def test_the_voice_session_page_of_a_deleted_session_says_so(server: ServerUnderTest, tab: Tab) -> None:
    """The session page went on showing the session Ready, with Done and Process now, and every
    press was answered 'no such session'."""
    session_id = await server.create_session("alice", "Standup")
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/session/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    await admin_delete(server, session_id)

    await expect(page.locator("#page-error")).to_have_attribute("data-code", "deleted_by_operator")
    await expect(page.locator("#page-error")).to_contain_text("Session deleted")
    await expect(page.locator("#page-error")).to_contain_text("deleted on the server")
    await expect(page.locator("#done-button")).to_be_hidden()
    assert not tab.errors, tab.errors
