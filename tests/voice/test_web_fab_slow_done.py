"""Done on a network too slow to finish its uploads in the FAB's wait: the session is closed as
pressed, and what was still uploading follows into it (late chunks), said so (audit
"voicephone": it went back to Paused, said "not uploaded yet" once nothing was left to send, and
never said to press Done again)."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.test_web_progress import Held
from tests.voice.test_web_fab_offline import recording, server_has

PAST_THE_WAIT_MS = 25_000  # web/js/fab.js DONE_WAIT_MS is 20 s


async def test_done_on_a_slow_network_closes_and_the_last_recording_follows(server: ServerUnderTest, tab: Tab) -> None:
    await tab.page.clock.install()  # the FAB's wait for its uploads, moved by the test
    page, session_id = await recording(tab, server)
    held = Held()
    await held.install(page, "**/voicebot/chunks*")  # a network that takes its time
    await page.locator("#fab-done").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "final_uploading")
    await page.clock.fast_forward(PAST_THE_WAIT_MS)
    await expect(page.locator("#fab-message")).to_have_text(
        "Session closed (Done \u00d7 1). 1 recording(s) still uploading: each is added to it as it arrives,"
        " and it is processed again."
    )
    await server_has(server, session_id, "closed", 0)
    held.released.set()  # the upload arrives after the close: the closed session takes it
    await server_has(server, session_id, "closed", 1)
    await expect(page.locator("#fab-new")).to_be_enabled()


async def test_a_sign_in_that_runs_out_mid_recording_says_to_sign_in_again(server: ServerUnderTest, tab: Tab) -> None:
    """A token that cannot renew itself (minted by an operator: no refresh cookie) ran out while
    recording: the FAB said "Upload failed; retrying in 30 s." while the kept chunks piled up, and
    never what would help (audit "voicephone")."""
    await tab.use_token(server.token("alice", ttl_s=60))
    page = await tab.open("/")
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    clock = server.services.clock
    clock.shift_ms += 120_000  # the token has run out on the server's clock
    try:
        await page.locator("#fab-cut").click()  # a chunk to upload
        await expect(page.locator("#fab-message")).to_have_text(
            "Your sign-in has run out: your recording is kept on this device and sent once you sign in again."
        )
    finally:
        clock.shift_ms -= 120_000
