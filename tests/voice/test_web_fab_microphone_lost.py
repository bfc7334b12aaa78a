"""The microphone taken away mid-recording (a call, another app, a phone put to sleep): the FAB
says so and the session stops showing a recording nobody makes."""

from __future__ import annotations

import asyncio

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.voice.test_web_session_follow import until_audio_is_kept
from tests.voice.waits import status_becomes, stored_chunks

# Keeps every microphone stream the page is given, so the test can end its tracks as the system
# does when it takes the microphone away (the recorder then stops on its own).
KEEP_STREAMS = """
const given = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
window.testStreams = [];
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await given(constraints);
  window.testStreams.push(stream);
  return stream;
};
"""
END_TRACKS = """() => {
  for (const stream of window.testStreams)
    for (const track of stream.getTracks()) {
      track.stop();
      track.dispatchEvent(new Event("ended"));
    }
}"""


async def test_a_microphone_taken_away_mid_recording_stops_the_recording_and_says_so(
    server: ServerUnderTest, tab: Tab
) -> None:
    await tab.use_token(server.token("alice"))
    await tab.page.add_init_script(KEEP_STREAMS)
    session_id = await server.create_session("alice")
    page = await tab.open(f"/session/{session_id}")
    await expect(page.locator("#fab-rec")).to_be_enabled()
    await page.locator("#fab-rec").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    # The status says "recording" (the server's word) while the microphone still opens: 1.2 s of
    # audio are counted from the recorder's first piece, not from the status.
    await until_audio_is_kept(page)
    await asyncio.sleep(1.2)

    await page.evaluate(END_TRACKS)  # the system takes the microphone away
    await expect(page.locator("#fab-message")).to_contain_text("The microphone stopped recording")
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "error")
    await status_becomes(server, session_id, "error")  # not "recording", renewed by a live page
    [chunk] = await stored_chunks(server, session_id, 1)  # what it recorded is kept
    assert chunk["duration_ms"] >= 500, chunk  # of the 1.2 s, less the recorder's start

    # Resume records again, with a microphone asked for anew.
    await expect(page.locator("#fab-rec")).to_have_text("Resume")
    await page.locator("#fab-rec").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await status_becomes(server, session_id, "recording")
    await asyncio.sleep(1.0)  # a second of audio
    await page.locator("#fab-pause").click()
    await status_becomes(server, session_id, "paused")
    assert len(await stored_chunks(server, session_id, 2)) == 2
