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


async def test_an_upload_failing_offline_does_not_take_turns_with_the_offline_words(
    server: ServerUnderTest, tab: Tab
) -> None:
    """Offline, each chunk's failed upload put "Upload failed: your recording is kept on this
    device…" over "Offline: still recording…", the two taking turns, each read out again
    (audit "voicefield"). Offline says it all: it stays."""
    await tab.use_token(server.token("alice"))
    gate = SocketGate()
    await gate.install(tab.page)
    page = await tab.open("/")
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    message = page.locator("#fab-message")
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url) if "/voicebot/chunks" in request.url else None)
    await page.context.set_offline(True)
    await gate.cut()
    await expect(message).to_have_text(OFFLINE_RECORDING)
    await page.locator("#fab-cut").click()  # a chunk to upload, offline
    for _ in range(300):  # its first try and its retry failed: the first one's words were said by then
        if len(failed) >= 2:
            break
        await page.wait_for_timeout(50)
    assert len(failed) >= 2, failed
    await expect(message).to_have_text(OFFLINE_RECORDING)
    await page.context.set_offline(False)
    gate.release()
    await expect(message).not_to_have_text(OFFLINE_RECORDING)
