"""Pause and Cut act on the recorder at once, offline too; the status follows when it can."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Page, expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.voice.test_web_session_follow import until_audio_is_kept

# Well under the 10 s a socket call waits for its ack: the FAB must not wait for the network.
AT_ONCE_MS = 3000
# Back online: the socket reconnects (its back-off is at most 5 s), then the status is sent again.
CAUGHT_UP_S = 20.0

# The microphone's tracks, as the FAB gets them: a released microphone's tracks are "ended".
KEEP_TRACKS = """
window.__tracks = [];
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await getUserMedia(constraints);
  window.__tracks.push(...stream.getTracks());
  return stream;
};
"""


async def recording(tab: Tab, server: ServerUnderTest) -> tuple[Page, str]:
    """Open ``/`` as alice, press New and wait until the recorder has handed over some audio."""
    await tab.use_token(server.token("alice"))
    await tab.page.add_init_script(KEEP_TRACKS)
    page = await tab.open("/")
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    session_id = await server.services.voice.active_id("alice")
    assert session_id is not None
    await until_audio_is_kept(page)
    return page, session_id


async def server_has(server: ServerUnderTest, session_id: str, status: str, chunks: int) -> None:
    """Wait until the session's status is ``status`` with at least ``chunks`` chunks stored."""
    deadline = asyncio.get_running_loop().time() + CAUGHT_UP_S
    while True:
        session = await server.services.voice.get(session_id)
        assert session is not None
        if session.status == status and session.chunk_count >= chunks:
            return
        assert asyncio.get_running_loop().time() < deadline, (session.status, session.chunk_count)
        await asyncio.sleep(0.1)


async def test_pause_offline_stops_the_recorder_at_once_and_the_server_follows(
    server: ServerUnderTest, tab: Tab
) -> None:
    page, session_id = await recording(tab, server)
    await page.context.set_offline(True)
    await page.locator("#fab-pause").click()

    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused", timeout=AT_ONCE_MS)
    await expect(page.locator("#fab-rec")).to_have_text("Resume", timeout=AT_ONCE_MS)
    await page.wait_for_function(
        "window.__tracks.length > 0 && window.__tracks.every((track) => track.readyState === 'ended')",
        timeout=AT_ONCE_MS,
    )
    await expect(page.locator("#fab-pending")).to_have_text("1 upload pending", timeout=AT_ONCE_MS)
    await expect(page.locator("#fab-cut")).to_be_disabled()
    await expect(page.locator("#fab-pause")).to_be_disabled()

    await page.context.set_offline(False)
    await server_has(server, session_id, "paused", chunks=1)
    await expect(page.locator("#fab-pending")).to_be_hidden()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
    # The microphone was not asked for again: nothing records.
    assert await page.evaluate("window.__tracks.every((track) => track.readyState === 'ended')")
    assert not tab.errors, tab.errors


async def test_cut_offline_queues_the_chunk_at_once_and_recording_goes_on(server: ServerUnderTest, tab: Tab) -> None:
    page, session_id = await recording(tab, server)
    await page.context.set_offline(True)
    await page.locator("#fab-cut").click()

    await expect(page.locator("#fab-pending")).to_have_text("1 upload pending", timeout=AT_ONCE_MS)
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording", timeout=AT_ONCE_MS)
    await expect(page.locator("#fab-pause")).to_be_enabled()
    assert await page.evaluate("window.__tracks.some((track) => track.readyState === 'live')")

    await page.context.set_offline(False)
    # The cut chunk is uploaded, and the server shows the recording that goes on (not the cut,
    # nor the pause it made of the recorder's lost connection).
    await server_has(server, session_id, "recording", chunks=1)
    await expect(page.locator("#fab-pending")).to_be_hidden()
    await page.locator("#fab-pause").click()
    await server_has(server, session_id, "paused", chunks=2)
    assert not tab.errors, tab.errors


async def test_new_pressed_offline_says_so_at_once_and_makes_nothing(server: ServerUnderTest, tab: Tab) -> None:
    """Its retry-safe create waited 2 s of retries that could not go out, then said 'The server
    cannot be reached.' (so did the landing page's and the streams page's creates)."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.context.set_offline(True)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-message")).to_have_text(
        "You are offline: it was not sent. Try again once the connection is back.", timeout=AT_ONCE_MS
    )
    await expect(page.locator("#fab-new")).to_be_enabled()
    assert len([url for url in requests if "create_session" in url]) == 1, requests  # tried once, not three times
    await page.context.set_offline(False)
    assert await server.services.voice.list_for_user("alice", limit=5) == []


async def test_rec_pressed_offline_says_so_at_once(server: ServerUnderTest, tab: Tab) -> None:
    """The browser offline before its socket noticed (a ping away), Rec said nothing for the 10 s
    its call waited."""
    session_id = await server.create_session("alice", name="Kept")
    await server.services.voice.set_active("alice", session_id)
    await tab.use_token(server.token("alice"))
    await tab.page.clock.install()  # runs as the wall's until moved over the call's wait
    page = await tab.open("/")
    await expect(page.locator("#fab-rec")).to_be_enabled()
    await page.context.set_offline(True)
    await page.locator("#fab-rec").click()
    message = page.locator("#fab-message")
    await expect(message).to_have_text("Offline: recording starts when the connection is back…", timeout=AT_ONCE_MS)
    await page.clock.fast_forward(10_000)  # the call's 10 s (web/js/client.js), not waited out for real
    # Still offline when the call gives up: nothing recorded, and it says so (whether the socket
    # had noticed first or not).
    await expect(message).to_have_text(
        re.compile(
            r"^You are offline: (it was not sent|nothing was recorded)\. Try again once the connection is back\.$"
        ),
        timeout=20_000,
    )
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "ready")
    await page.context.set_offline(False)


async def test_done_offline_shows_the_final_upload_at_once_not_a_recording(server: ServerUnderTest, tab: Tab) -> None:
    """Done frees the microphone at once, offline too; the FAB went on showing 'Recording' for the
    10 s its status call waited."""
    await tab.page.clock.install()  # runs as the wall's until moved over the call's wait
    page, session_id = await recording(tab, server)
    await page.context.set_offline(True)
    await page.locator("#fab-done").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "final_uploading", timeout=AT_ONCE_MS)
    await page.wait_for_function("window.__tracks.every((track) => track.readyState === 'ended')", timeout=AT_ONCE_MS)
    await page.clock.fast_forward(10_000)  # the status call's 10 s (web/js/client.js), not waited out for real
    # Still offline when the call gives up: paused, the recording kept.
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused", timeout=20_000)
    await page.context.set_offline(False)
    await server_has(server, session_id, "paused", chunks=1)
    assert not tab.errors, tab.errors
