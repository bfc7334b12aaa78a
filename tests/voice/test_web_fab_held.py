"""In Chromium: a recording waiting for its upload is kept for the identity that made it.

Only that identity can upload a chunk into its session. A device signed out elsewhere, whose
person then pressed "Start as a new guest", sent the chunks still queued as the new guest: each
was refused (403) and dropped, the recording lost without a word beyond "A chunk was refused".
Now such chunks are held: kept on the device, offered as files, uploaded once the browser is
their identity again."""

from __future__ import annotations

import asyncio
import json

import pytest
from playwright.async_api import Browser, Page, Route, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.browser import TOKEN_KEY, Tab, accept_dialogs, new_tab
from tests.helpers import ServerUnderTest
from tests.voice.test_web_session_follow import until_audio_is_kept

pytestmark = pytest.mark.timeout(180)

UPLOADED_S = 20.0

QUEUED = """async () => {
  const open = indexedDB.open("sessionhub-fab", 2);
  const db = await new Promise((ok, no) => { open.onsuccess = () => ok(open.result); open.onerror = () => no(open.error); });
  try {
    const count = db.transaction("uploads").objectStore("uploads").count();
    return await new Promise((ok, no) => { count.onsuccess = () => ok(count.result); count.onerror = () => no(count.error); });
  } finally {
    db.close();
  }
}"""


async def paused_on_a_new_session(page: Page, server: ServerUnderTest, user_id: str) -> str:
    """From ``page`` (the user's, with the FAB): New, a moment recorded, Pause, its upload gone
    through; the session's id."""
    await record_one_chunk_kept_back(page)
    session_id = await server.services.voice.active_id(user_id)
    assert session_id is not None
    await expect(page.locator("#fab-rec")).to_have_text("Resume")
    return session_id


async def record_one_chunk_kept_back(page: Page, *, unroute: bool = True) -> None:
    """Press New, record a moment and Pause, with uploads failing: one chunk waits in the queue
    (and goes on failing with ``unroute=False``: the caller lets it through)."""
    await page.route("**/voicebot/chunks?*", lambda route: route.abort())
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await until_audio_is_kept(page)
    await page.locator("#fab-pause").click()
    await expect(page.locator("#fab-pending")).to_have_text("1 upload pending")
    if unroute:
        await page.unroute("**/voicebot/chunks?*")


async def use_token_now(page: Page, token: str) -> None:
    record = json.dumps({"token": token, "expires_at": 2_000_000_000, "guest": False})
    await page.evaluate(f"localStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(record)})")


async def until_chunks(server: ServerUnderTest, session_id: str, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + UPLOADED_S
    while True:
        session = await server.services.voice.get(session_id)
        assert session is not None
        if session.chunk_count >= count:
            return
        assert asyncio.get_running_loop().time() < deadline, session.chunk_count
        await asyncio.sleep(0.1)


async def test_a_chunk_waits_for_the_identity_that_recorded_it(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    # Uploads go on failing until somebody else has signed in: a retry let through before would
    # upload the chunk as its owner, and nothing would be held.
    await record_one_chunk_kept_back(page, unroute=False)
    session_id = await server.services.voice.active_id("alice")
    assert session_id is not None

    await use_token_now(page, server.token("bob"))  # somebody else signs in on this browser
    await page.set_viewport_size({"width": 390, "height": 844})  # on a phone
    await page.reload(wait_until="domcontentloaded")
    held = page.locator("#fab-held")
    await expect(held).to_contain_text("1 recording made here as another identity is kept on this device")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    box = await page.locator("#fab-held-download").bounding_box()
    assert box is not None and box["height"] >= 24 and box["x"] + box["width"] <= 390
    await expect(page.locator("#fab-pending")).to_be_hidden()
    await expect(page.locator("#fab-message")).not_to_contain_text("refused")
    assert await page.evaluate(QUEUED) == 1
    async with page.expect_download() as downloading:
        await page.locator("#fab-held-download").click()
    download = await downloading.value
    assert download.suggested_filename.startswith(f"recording-{session_id}-chunk-")
    await expect(page.locator("#fab-held-remove")).to_be_visible()

    await page.unroute("**/voicebot/chunks?*")
    await use_token_now(page, server.token("alice"))  # its owner is back: it goes up
    await page.reload(wait_until="domcontentloaded")
    await until_chunks(server, session_id, 1)
    await expect(held).to_be_hidden()


async def test_start_as_a_new_guest_after_a_sign_out_elsewhere_keeps_the_recording(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    tab = await new_tab(browser, iserver)
    try:
        page = await tab.open("/")
        # A first visit: New made the visitor a guest. Its uploads go on failing, so the chunk is
        # still held when the device is signed out.
        await record_one_chunk_kept_back(page, unroute=False)
        user_id = await page.locator("#identity").get_attribute("data-user-id")
        await iserver.services.identities.revoke_all(str(user_id))
        await expect(page.locator("#identity-lost")).to_contain_text("This device was signed out.")
        held = page.locator("#fab-held")
        await expect(held).to_contain_text("1 recording made here is kept on this device")
        await expect(held).to_contain_text("it uploads once you sign in again")
        # Any page with the recorder, opened afterwards, says so too (it has no token to start with).
        page = await tab.open("/session")
        await expect(page.locator("#identity-lost")).to_be_visible()
        held = page.locator("#fab-held")
        await expect(held).to_contain_text("1 recording made here is kept on this device")

        async with page.expect_navigation(wait_until="load"):
            await page.locator("#identity-start-over").click()
        await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
        await expect(page.locator("#identity")).not_to_have_attribute("data-user-id", str(user_id))
        await expect(held).to_contain_text("1 recording made here as another identity is kept")
        await expect(page.locator("#fab-message")).not_to_contain_text("refused")
        assert await page.evaluate(QUEUED) == 1
        async with page.expect_download():
            await page.locator("#fab-held-download").click()
        await page.locator("#fab-held-remove").focus()  # the person has the file: forget it here
        await page.keyboard.press("Enter")
        await expect(held).to_be_hidden()
        await expect(page.locator("#fab-new")).to_be_focused()  # not dropped to the page with the note
        assert await page.evaluate(QUEUED) == 0
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()


# Where the end of the page is, scrolled to the end, and a control the keyboard Tabbed to.
UNDER_THE_FAB = """(selector) => {
  const fab = document.getElementById("sessionhub-fab").getBoundingClientRect();
  const rows = [...document.querySelectorAll(selector)];
  rows.at(-2).focus({ preventScroll: true });
  window.scrollTo(0, document.documentElement.scrollHeight);
  return { fabTop: fab.top, endBottom: rows.at(-1).getBoundingClientRect().bottom };
}"""


async def test_the_end_of_a_page_is_not_under_a_recorder_holding_recordings_on_a_phone(
    server: ServerUnderTest, tab: Tab
) -> None:
    """With its kept-recordings note the recorder is 15 rem tall on a phone: the page kept room for
    6 to 11 rem, so the last sessions of /session stayed under it, scrolled or Tabbed to."""
    for i in range(25):
        await server.create_session("bob", name=f"Session {i}")
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    # The upload goes on failing until bob is in: a retry as alice (a second later) would empty the
    # queue under a slow machine, and the recorder would hold nothing.
    await record_one_chunk_kept_back(page, unroute=False)
    await use_token_now(page, server.token("bob"))
    await page.set_viewport_size({"width": 390, "height": 664})
    page = await tab.open("/session")
    await expect(page.locator("#fab-held")).to_be_visible()
    rows = "#my-session-list li a"
    await expect(page.locator(rows)).to_have_count(20)
    # The page makes room for the recorder as the recorder's size changes (a resize observer, a
    # frame later): measured until it has, within the wait's bound (once, under load, the first
    # measure came before it).
    clear = f"() => {{ const at = ({UNDER_THE_FAB})({json.dumps(rows)}); return at.endBottom <= at.fabTop; }}"
    try:
        await page.wait_for_function(clear, timeout=5000)
    except PlaywrightTimeoutError:
        at = await page.evaluate(UNDER_THE_FAB, rows)
        raise AssertionError(f"the end of the page stayed under the recorder: {at}") from None
    await page.evaluate("window.scrollTo(0, 0)")
    await page.keyboard.press("Tab")  # from the row before the last one
    await expect(page.locator(rows).last).to_be_focused()
    box = await page.locator(rows).last.bounding_box()
    fab = await page.locator("#sessionhub-fab").bounding_box()
    assert box is not None and fab is not None and box["y"] + box["height"] <= fab["y"], (box, fab)


async def test_a_recorder_loaded_after_the_page_heard_of_the_sign_out_says_what_it_holds(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    """The page learns the device was signed out (its own scripts ask first) before the recorder's
    script has arrived, as on a slow phone. The recorder still says the recording is held; it used
    to wait for a `sessionhub:identity-lost` already dispatched, and showed nothing."""
    tab = await new_tab(browser, iserver)
    try:
        page = await tab.open("/")
        await record_one_chunk_kept_back(page, unroute=False)  # held until the sign-out, not retried up
        user_id = await page.locator("#identity").get_attribute("data-user-id")
        await iserver.services.identities.revoke_all(str(user_id))
        await expect(page.locator("#identity-lost")).to_be_visible()

        page = tab.page
        heard = asyncio.Event()

        async def after_the_loss(route: Route) -> None:
            await heard.wait()
            await route.continue_()

        await page.route("**/static/js/fab.js", after_the_loss)
        await page.goto(f"{iserver.url}/session", wait_until="commit")
        await expect(page.locator("#identity-lost")).to_be_visible()
        heard.set()
        held = page.locator("#fab-held")
        await expect(held).to_contain_text("1 recording made here is kept on this device")
        await expect(held).to_contain_text("it uploads once you sign in again")
        assert await page.evaluate(QUEUED) == 1
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()


async def test_a_recording_of_a_guest_signed_out_for_good_is_not_promised_an_upload(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    """A guest with no passkey and no other device signs out, asked first that nothing could sign
    in as it again. The recorder went on saying its held recording "uploads once you sign in
    again as the identity that made it (a device link or passkey)": neither could ever happen
    (audit "returning"). It says the recording cannot be uploaded, and offers the file."""
    tab = await new_tab(browser, iserver)
    try:
        page = await tab.open("/")
        await record_one_chunk_kept_back(page, unroute=False)  # held until the sign-out
        asked = accept_dialogs(page)
        await page.locator("#identity-name").click()
        async with page.expect_navigation(wait_until="load"):
            await page.locator("#identity-signout-all").click()
        assert len(asked) == 1 and "no device can sign in as this identity again" in asked[0], asked
        held = page.locator("#fab-held")
        await expect(held).to_contain_text(
            "1 recording made here as a guest that was signed out from its last device is kept on this device: "
            "no device can sign in as that guest again, so it cannot be uploaded."
        )
        await expect(held).not_to_contain_text("sign in again as")
        assert await page.evaluate(QUEUED) == 1
        async with page.expect_download():
            await page.locator("#fab-held-download").click()
        # Signed out with a way back (here: the mark of the asked sign-out taken away), the
        # recording waits for that identity, and is still shown after the sign-out (it was not).
        await page.evaluate('localStorage.removeItem("sessionhub.stranded")')
        page = await tab.open("/session")
        held = page.locator("#fab-held")
        await expect(held).to_contain_text("1 recording made here is kept on this device")
        await expect(held).to_contain_text("it uploads once you sign in again")
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()
