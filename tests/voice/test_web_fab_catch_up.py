"""In Chromium: a device back online records into the user's active session as it is now.

A phone offline for a while still showed the session it had then. Meanwhile the user's other
device closed it (Done) and started another (New). Rec pressed on the phone as the connection
came back went to the closed session: refused, and the refusal wiped from the recorder by the
catch-up that followed; nothing recorded, nothing said. And while offline, Rec said nothing for
the 10 s its call waited."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.browser import SocketGate, new_tab
from tests.helpers import ServerUnderTest

pytestmark = pytest.mark.timeout(120)

# Well under the 10 s a socket call waits for the connection: the recorder says so before that.
AT_ONCE_MS = 5000


async def test_rec_pressed_offline_waits_for_the_catch_up_and_records_into_the_active_session(
    server: ServerUnderTest, browser: Browser
) -> None:
    laptop = await new_tab(browser, server)
    phone = await new_tab(browser, server)
    try:
        for tab in (laptop, phone):
            await tab.use_token(server.token("alice"))
        await phone.page.set_viewport_size({"width": 390, "height": 844})
        gate = SocketGate()
        await gate.install(phone.page)
        desk = await laptop.open("/")
        hand = await phone.open("/session")
        await expect(desk.locator("#fab-new")).to_be_enabled()
        await desk.locator("#fab-new").click()
        await expect(hand.locator(".fab-label")).to_have_text("Recording elsewhere")
        await desk.locator("#fab-pause").click()
        await expect(hand.locator("#fab-status")).to_have_attribute("data-status", "paused")
        first = await server.services.voice.active_id("alice")

        await gate.cut()  # the phone goes offline; the laptop closes that session and starts another
        await desk.locator("#fab-done").click()
        await expect(desk.locator("#fab-status")).to_have_attribute("data-status", "closed")
        await desk.locator("#fab-new").click()
        await expect(desk.locator("#fab-status")).to_have_attribute("data-status", "recording")
        await desk.locator("#fab-pause").click()
        await expect(desk.locator("#fab-status")).to_have_attribute("data-status", "paused")
        second = await server.services.voice.active_id("alice")
        assert second is not None and second != first

        await hand.locator("#fab-rec").focus()  # with the keyboard
        await hand.keyboard.press("Enter")
        message = hand.locator("#fab-message[role=status]")
        await expect(message).to_have_text("Offline: recording starts when the connection is back…", timeout=AT_ONCE_MS)
        gate.release()
        await expect(hand.locator("#fab-status")).to_have_attribute("data-status", "recording")
        await expect(message).to_have_text("Your active session changed while you were offline: recording into it.")
        await expect(hand.locator("#fab-pause")).to_be_focused()
        await expect(desk.locator(".fab-label")).to_have_text("Recording elsewhere")
        closed = await server.services.voice.get(str(first))
        recording = await server.services.voice.get(second)
        assert closed is not None and recording is not None
        assert (closed.status, recording.status) == ("closed", "recording")
        await hand.locator("#fab-pause").click()
        await expect(hand.locator("#fab-status")).to_have_attribute("data-status", "paused")
        assert not laptop.errors and not phone.errors, laptop.errors + phone.errors
    finally:
        await laptop.page.context.close()
        await phone.page.context.close()
