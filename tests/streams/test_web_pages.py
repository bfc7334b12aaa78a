"""The stream pages as people read them (issue 23): the top-bar badge, the viewer's last
confirmation during a pause, the dashboard after End, and who clipped, live and after a reload."""

from __future__ import annotations

from playwright.async_api import Browser, Dialog, expect

from tests.browser import Tab, new_tab
from tests.streams.helpers import create_stream
from tests.helpers import ServerUnderTest


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_stream_pages_say_what_is_true(server: ServerUnderTest, tab: Tab, browser: Browser) -> None:
    session_id = await create_stream(server)
    await tab.use_token(server.token("alice"))
    dash = await tab.open(f"/streams/{session_id}")
    await expect(dash.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(dash.locator("#stream-state")).to_have_text("Not started")
    # The connection badge does not call a stream that has not started "Live".
    await expect(dash.locator("#connection")).not_to_have_text("Live")

    viewer_tab = await new_tab(browser, server)  # a guest
    try:
        viewer = await viewer_tab.open(f"/watch/{session_id}")
        await expect(viewer.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(viewer.locator("#connection")).not_to_have_text("Live")
        await dash.locator("#action-start").click()
        await expect(viewer.locator("#clip-button")).to_be_enabled()
        await viewer.locator("#note-input").fill("nice jump")
        await viewer.locator("#clip-button").click()
        await expect(viewer.locator("#confirmation")).to_contain_text("Clipped!")

        who = dash.locator(".review-clip .who")
        await expect(who).to_have_count(1)
        live_text = await who.text_content()
        assert live_text is not None and live_text.startswith("viewer ")

        await dash.locator("#action-pause").click()
        await expect(viewer.locator("#clip-reason")).to_contain_text("paused")
        await expect(viewer.locator("#confirmation")).to_be_hidden()  # "Clipped!" is not left standing

        await dash.reload(wait_until="domcontentloaded")
        await expect(dash.locator(".review-clip .who")).to_have_text(live_text)  # not the raw guest-… id

        dash.once("dialog", accept)
        await dash.locator("#action-end").click()
        await expect(dash.locator("#stream-state")).to_have_text("Ended")
        await expect(dash.locator(".state-actions")).to_be_hidden()
    finally:
        await viewer_tab.page.context.close()
