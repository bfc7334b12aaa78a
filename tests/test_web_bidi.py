"""In Chromium: right-to-left text a person typed stays in its place among the page's own text.

A title or note in Hebrew or Arabic, put in one text run with what follows it, pulled the
separator and the next number into its right-to-left run: "שלום / 3 cats" showed as
"3 / שלום cats", and an admin row "مرحبا · 3fa2b1c0" showed the id's first digit on the title's
other side. Each such text is now a bidi isolate."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from tests.admin.test_http import LONG_TTL_S, admin_token
from tests.browser import Tab, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, create_stream, started

# The left edge of the first character of each of `parts` in the text under `selector`.
LEFT_OF = """([selector, parts]) => {
  const root = document.querySelector(selector);
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const lefts = {};
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const part of parts) {
      const at = node.data.indexOf(part);
      if (at < 0 || part in lefts) continue;
      const range = document.createRange();
      range.setStart(node, at);
      range.setEnd(node, at + 1);
      lefts[part] = range.getBoundingClientRect().left;
    }
  }
  return lefts;
}"""


async def lefts(page: Page, selector: str, parts: list[str]) -> dict[str, float]:
    found: dict[str, float] = await page.evaluate(LEFT_OF, [selector, parts])
    assert set(found) == set(parts), found
    return found


async def test_a_right_to_left_note_keeps_the_next_notes_number_in_place(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id, _owner = await started(server, clients)
    for user, note in (("v1", "שלום"), ("v2", "3 cats")):
        viewer = await connect(server, clients, user)
        ack = await viewer.call("clip_submit", {"session_id": session_id, "note": note})
        assert ack["ok"] is True, ack
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator(".moment .note")).to_have_text("שלום / 3 cats")
    at = await lefts(page, ".moment .note", ["/", "3", "cats"])
    assert at["/"] < at["3"] < at["cats"], at


async def test_a_right_to_left_title_keeps_the_id_after_it_in_the_admin_list(server: ServerUnderTest, tab: Tab) -> None:
    # An id starting with a digit is the one the title's run pulled in (a letter is strong).
    for _ in range(40):
        session_id = await create_stream(server, title="مرحبا")
        if session_id[0].isdigit():
            break
    assert session_id[0].isdigit()
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    row = f'tr[data-id="{session_id}"] .row-open'
    await expect(page.locator(row)).to_have_text(f"مرحبا · {session_id[:8]}")
    at = await lefts(page, row, ["·", session_id[:8]])
    assert at["·"] < at[session_id[:8]], at


async def test_a_right_to_left_viewer_name_is_isolated_in_the_moderation_notice(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id, _owner = await started(server, clients)
    viewer = await connect(server, clients, "v1")
    await server.services.identities.rename("v1", "שלום")
    ack = await viewer.call("clip_submit", {"session_id": session_id, "note": "x"})
    assert ack["ok"] is True, ack
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await page.locator(".clip-block").first.click()
    await expect(page.locator("#notice")).to_have_text("שלום may no longer clip this stream.")
    await expect(page.locator("#notice bdi")).to_have_text("שלום")


async def test_a_right_to_left_speaker_keeps_its_duration_after_it_in_the_digest(
    server: ServerUnderTest, tab: Tab
) -> None:
    from tests.audio_samples import webm
    from tests.voice.test_processing import run_jobs
    from tests.voice.uploads import chunk_form, upload

    session_id = await server.create_session("alice", "Review")
    token = server.token("alice")
    await upload(server, token, chunk_form(session_id, webm(1200), speaker="שלום", start_ms=0, end_ms=1200))
    await upload(server, token, chunk_form(session_id, webm(800), speaker="Ada", start_ms=2000, end_ms=2800))
    await tab.use_token(token)
    page = await tab.open(f"/session/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await page.locator("#done-button").click()
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "closed")
    await run_jobs(server)
    speakers = page.locator("#digest dd", has_text="Ada")
    await expect(speakers.locator("bdi")).to_have_text(["שלום", "Ada"])
    # Its "(0:01)" was pulled into the name's right-to-left run, and shown on the name's left.
    at = await lefts(page, "#digest", ["ש", "(", "Ada"])
    assert at["ש"] < at["("] < at["Ada"], at


async def test_a_right_to_left_name_is_isolated_on_the_device_link_page(
    server: ServerUnderTest, browser: Browser
) -> None:
    from tests.identity.test_web_link import device_link, guest_with_a_session

    first = await new_tab(browser, server)
    second = await new_tab(browser, server)
    try:
        phone = await guest_with_a_session(first, "Made on the phone")
        laptop = await guest_with_a_session(second, "Made on the laptop")
        await laptop.locator("#identity-name").click()
        await laptop.locator("#identity-name-input").fill("שלום 2")
        await laptop.get_by_role("button", name="Save name").click()
        await expect(laptop.locator("#identity-name")).to_have_text("שלום 2")
        asking = await second.open(await device_link(phone, server))
        await expect(asking.locator("#login-status")).to_contain_text("This browser is “שלום 2”, with sessions")
        await expect(asking.locator("#login-status bdi")).to_have_text("שלום 2")
        assert not first.errors and not second.errors, first.errors + second.errors
    finally:
        await first.page.context.close()
        await second.page.context.close()
