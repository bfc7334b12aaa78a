"""In Chromium: a FAB recording while its connection is down says so (its Socket.IO link cut).

The server pauses a recording whose recorder's connection went: every other client showed it
paused, while the phone that lost its network went on saying "Recording", and nothing else
(audit "phonelife"). It records on, keeps the audio and uploads it once back: it says that, and
that others see it paused until then."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser import SocketGate, Tab
from tests.helpers import ServerUnderTest

pytestmark = pytest.mark.timeout(120)

OFFLINE_RECORDING = (
    "Offline: still recording on this device, kept here and uploaded once the connection is back;"
    " others see it paused until then."
)


async def test_a_recording_fab_whose_connection_drops_says_it_records_on_and_others_see_it_paused(
    server: ServerUnderTest, tab: Tab
) -> None:
    await tab.use_token(server.token("alice"))
    gate = SocketGate()
    await gate.install(tab.page)
    page = await tab.open("/")
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    message = page.locator("#fab-message")

    await gate.cut()
    await expect(message).to_have_text(OFFLINE_RECORDING)
    await expect(message).to_have_attribute("data-kind", "offline")
    gate.release()
    await expect(message).to_have_text("")  # back: the recording is the session's again
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")

    await gate.cut()
    await page.locator("#fab-pause").click()  # paused offline: no longer recording on
    await expect(message).not_to_have_text(OFFLINE_RECORDING)
    gate.release()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
