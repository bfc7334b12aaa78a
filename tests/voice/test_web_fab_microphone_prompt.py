"""The microphone asked for before anything is told or made: a session said "recording" while the
browser still asked the person, and a refused microphone left a new, empty session, or a session
showing "error", behind."""

from __future__ import annotations

from playwright.async_api import Page, expect

from storage.voice.repository import VoiceSession
from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.voice.test_web_session_follow import until_audio_is_kept
from tests.voice.waits import status_becomes, stored_chunks

# The browser's prompt, held: getUserMedia answers once the test says the person allowed it.
PROMPT_HELD = """
const given = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
window.microphoneAsked = 0;
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.microphoneAsked += 1;
  return new Promise((resolve, reject) => {
    window.allowMicrophone = () => given(constraints).then(resolve, reject);
  });
};
"""

# The person (or the system) said no.
PROMPT_REFUSED = """
navigator.mediaDevices.getUserMedia = async () => {
  throw new DOMException("Permission denied", "NotAllowedError");
};
"""


async def rec_pressed(server: ServerUnderTest, tab: Tab, microphone: str) -> tuple[Page, str, VoiceSession]:
    """Rec pressed on a session's page whose microphone answers as ``microphone`` says: the page,
    the session, and the session as it was before."""
    await tab.use_token(server.token("alice"))
    await tab.page.add_init_script(microphone)
    session_id = await server.create_session("alice")
    before = await server.services.voice.get(session_id)
    assert before is not None
    page = await tab.open(f"/session/{session_id}")
    await expect(page.locator("#fab-rec")).to_be_enabled()
    await page.locator("#fab-rec").click()
    return page, session_id, before


async def test_a_session_says_recording_only_once_the_microphone_is_open(server: ServerUnderTest, tab: Tab) -> None:
    page, session_id, before = await rec_pressed(server, tab, PROMPT_HELD)
    await page.wait_for_function("window.microphoneAsked === 1")
    # The prompt is up: nothing was told (before, "recording" was, and stayed while it was up).
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == before.status, session
    await expect(page.locator("#fab-message")).to_contain_text("Waiting for the microphone")

    await page.evaluate("window.allowMicrophone()")
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await status_becomes(server, session_id, "recording")
    await expect(page.locator("#fab-message")).not_to_contain_text("Waiting for the microphone")
    await until_audio_is_kept(page)
    await page.locator("#fab-pause").click()
    await status_becomes(server, session_id, "paused")
    assert len(await stored_chunks(server, session_id, 1)) == 1


async def test_a_refused_microphone_makes_no_session(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    await tab.page.add_init_script(PROMPT_REFUSED)
    page = await tab.open("/")
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-message")).to_contain_text("The microphone is not available")
    assert await server.services.voice.active_id("alice") is None  # before: a new, empty session
    await expect(page.locator("#fab-new")).to_be_enabled()  # and New may be pressed again


async def test_a_refused_microphone_leaves_the_session_as_it_was(server: ServerUnderTest, tab: Tab) -> None:
    page, session_id, before = await rec_pressed(server, tab, PROMPT_REFUSED)
    await expect(page.locator("#fab-message")).to_contain_text("The microphone is not available")
    await expect(page.locator("#fab-rec")).to_be_enabled()
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == before.status, session  # before: "error"
    assert session.updated_at == before.updated_at, session
