"""`/session` follows the active session live: the FAB's New shows on the page (issue 23)."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page, expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest

# How many pieces of the chunk being recorded the FAB has kept (web/js/upload_queue.js keeps
# each one the recorder hands over in IndexedDB, every 250 ms).
KEPT_PIECES = """async () => {
  const open = indexedDB.open("sessionhub-fab", 2);
  const db = await new Promise((ok, no) => { open.onsuccess = () => ok(open.result); open.onerror = () => no(open.error); });
  try {
    const count = db.transaction("parts").objectStore("parts").count();
    return await new Promise((ok, no) => { count.onsuccess = () => ok(count.result); count.onerror = () => no(count.error); });
  } finally {
    db.close();
  }
}"""


async def until_audio_is_kept(page: Page, timeout_s: float = 10.0) -> None:
    """Wait until the recorder has handed over some audio. A pause before that stores no chunk,
    as it should: on a busy machine the first piece came after the test's pause once (s32-d2)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await page.evaluate(KEPT_PIECES) == 0:
        assert asyncio.get_running_loop().time() < deadline, "the recorder handed over no audio"
        await asyncio.sleep(0.05)


async def test_new_in_the_fab_shows_on_the_page_without_a_reload(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/session")
    await expect(page.locator("#empty-state")).to_be_visible()
    await expect(page.locator("#my-sessions-empty")).to_be_visible()
    await page.evaluate("window.__samePage = true")

    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    session_id = await server.services.voice.active_id("alice")
    assert session_id is not None
    await expect(page.locator("#empty-state")).to_be_hidden()
    await expect(page.locator("#session-id")).to_have_text(session_id)
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "recording")
    await expect(page).to_have_url(f"{server.url}/session/{session_id}")
    await expect(page.locator("#my-sessions-empty")).to_be_hidden()
    await expect(page.locator(f"#my-session-list li[data-session-id='{session_id}']")).to_have_count(1)
    assert await page.evaluate("window.__samePage === true")  # no reload: the FAB kept recording

    await until_audio_is_kept(page)
    await page.locator("#fab-pause").click()
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "paused")
    await expect(page.locator("#chunk-list li")).to_have_count(1)


async def test_another_tabs_new_switches_the_page_to_the_new_active_session(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    first_id = await server.create_session("alice", "First")
    await server.services.voice.set_active("alice", first_id)
    page = await tab.open("/session")
    await expect(page.locator("#session-name")).to_have_text("First")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    recorder = await page.context.new_page()
    await recorder.goto(server.url + "/", wait_until="domcontentloaded")
    await expect(recorder.locator("#fab-new")).to_be_enabled()
    await recorder.locator("#fab-new").click()
    await expect(recorder.locator("#fab-status")).to_have_attribute("data-status", "recording")
    second_id = await server.services.voice.active_id("alice")
    assert second_id not in (None, first_id)

    await expect(page.locator("#session-id")).to_have_text(str(second_id))
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "recording")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await recorder.locator("#fab-pause").click()
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "paused")
    # The session it left still updates its own row, not the page.
    await expect(page.locator(f"#my-session-list li[data-session-id='{first_id}']")).to_have_count(1)


async def test_the_empty_states_new_voice_session_starts_one_here(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/session")
    await expect(page.locator("#empty-state")).to_be_visible()
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.get_by_role("link", name="New voice session").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    session_id = await server.services.voice.active_id("alice")
    assert session_id is not None
    await expect(page).to_have_url(f"{server.url}/session/{session_id}")
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "recording")
    await page.locator("#fab-pause").click()
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "paused")


async def test_a_used_login_link_says_so_in_its_heading(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/tg_auth?token=spent-or-made-up")
    await expect(page.locator("#login-status")).to_contain_text("works once")
    await expect(page.locator("h1")).to_have_text("This link was already used or has expired")
    await expect(page).to_have_title("This link was already used or has expired · sessionhub")
    page = await tab.open("/tg_auth")
    await expect(page.locator("h1")).to_have_text("This link is incomplete")
