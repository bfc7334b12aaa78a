"""Done on a network too slow to finish its uploads in the FAB's wait: the session is closed as
pressed, and what was still uploading follows into it (late chunks), said so (audit
"voicephone": it went back to Paused, said "not uploaded yet" once nothing was left to send, and
never said to press Done again)."""

from __future__ import annotations

import contextlib
import re

from playwright.async_api import Route, expect

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
    message = page.locator("#fab-message")
    # On past the wait, however late it began (its status's answer first, on a busy machine).
    for _ in range(PAST_THE_WAIT_MS // 1000):
        await page.clock.run_for(2_000)
        with contextlib.suppress(AssertionError):
            await expect(message).to_have_text(re.compile("^Session closed"), timeout=500)
            break
    await expect(message).to_have_text(
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


# Every text written into the FAB's live region, in order (a screen reader says each).
WRITES = """
window.__said = [];
new MutationObserver(() => {
  const text = document.getElementById("fab-message")?.textContent ?? "";
  window.__said.push(text);
}).observe(document.documentElement, { subtree: true, childList: true, characterData: true });
"""


async def test_an_upload_retried_again_and_again_is_said_once(server: ServerUnderTest, tab: Tab) -> None:
    """Each retry wrote "Upload failed; retrying in N s." with a new N: a screen reader said it
    five times in 25 s offline (audit "voicephone")."""
    await tab.page.clock.install()  # the queue's back-off, moved by the test
    page, _ = await recording(tab, server)
    tries: list[int] = []

    async def fail(route: Route) -> None:
        tries.append(1)
        await route.abort("internetdisconnected")

    await page.route("**/voicebot/chunks*", fail)
    await page.evaluate(WRITES)
    await page.locator("#fab-cut").click()
    for _ in range(40):  # the back-off's 1, 2, 4, 8 s …: a few tries
        if len(tries) >= 4:
            break
        await page.clock.run_for(5_000)
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", re.compile("recording|cutting"))
    assert len(tries) >= 4, tries
    said = await page.evaluate("window.__said")
    failed = [text for text in said if text.startswith("Upload failed")]
    assert failed and set(failed) == {"Upload failed: your recording is kept on this device and tried again shortly."}
    changes = [text for i, text in enumerate(said) if i == 0 or said[i - 1] != text]
    assert changes.count(failed[0]) == 1, changes
