"""The stream pages show clips as they are now, not only as this page load saw them arrive: the
viewer's "Your clips" after a reload or on another device, the dashboard's live feed after a
reload, a delete or an edit; and the dashboard's note editor can be left without saving."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, started


async def live(tab: Tab, path: str) -> Page:
    page = await tab.open(path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


async def clip(viewer: Client, session_id: str, note: str) -> str:
    ack = await viewer.call("clip_submit", {"session_id": session_id, "note": note})
    assert ack["ok"] is True, ack
    return str(ack["clip"]["clip_id"])


async def test_your_clips_come_back_after_a_reload_and_on_another_device(
    server: ServerUnderTest, tab: Tab, browser: Browser, clients: list[Client]
) -> None:
    clock = server.services.clock
    session_id, owner = await started(server, clients)
    other_viewer = await connect(server, clients, "carol")
    await tab.use_token(server.token("bob"))
    page = await live(tab, f"/watch/{session_id}")
    mine = page.locator("#mine li")
    await expect(page.locator("#mine-empty")).to_be_visible()

    await page.locator("#note-input").fill("from the page")
    await page.locator("#clip-button").click()
    await expect(mine).to_have_count(1)
    try:
        clock.shift_ms = 5_000  # past bob's cooldown: his phone clips too, and so does carol
        phone = await connect(server, clients, "bob")
        from_phone = await clip(phone, session_id, "from the phone")
        await clip(other_viewer, session_id, "carol's")
        clock.shift_ms = 10_000
        deleted = await clip(phone, session_id, "soon deleted")
    finally:
        clock.shift_ms = 0
    await owner.call("clip_update", {"session_id": session_id, "clip_id": from_phone, "note": "<b>edited</b>"})
    await owner.call("clip_delete", {"session_id": session_id, "clip_id": deleted})

    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    # Newest first, as the streamer left them: the edit shown (as text), the deleted one gone,
    # carol's never.
    await expect(mine.locator(".note")).to_have_text(["<b>edited</b>", "from the page"])
    await expect(page.locator("#mine-empty")).to_be_hidden()
    assert await page.locator("#mine b").count() == 0

    laptop = await new_tab(browser, server)  # another device of bob's: its own storage and token
    try:
        await laptop.use_token(server.token("bob"))
        other = await live(laptop, f"/watch/{session_id}")
        await expect(other.locator("#mine li .note")).to_have_text(["<b>edited</b>", "from the page"])
        assert not laptop.errors, laptop.errors
    finally:
        await laptop.page.context.close()


async def test_the_live_feed_shows_the_latest_clips_as_they_are_now(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id, owner = await started(server, clients)
    viewers = {name: await connect(server, clients, name) for name in ("v1", "v2", "v3")}
    first = await clip(viewers["v1"], session_id, "first")
    await clip(viewers["v2"], session_id, "second")
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/streams/{session_id}")
    feed = page.locator("#feed .feed-item .note")
    # Seeded from the stored clips, newest first: not "No clips yet." beside a count of 2.
    await expect(feed).to_have_text(["second", "first"])
    await expect(page.locator("#feed-empty")).to_be_hidden()

    await clip(viewers["v3"], session_id, "third")
    await expect(feed).to_have_text(["third", "second", "first"])
    page.on("dialog", lambda dialog: dialog.accept())  # each Delete asks first
    await page.locator(".review-clip", has_text="second").locator(".clip-delete").click()
    await expect(feed).to_have_text(["third", "first"])
    # The streamer's other tab edits a note and clears a viewer: this page's feed follows.
    await owner.call("clip_update", {"session_id": session_id, "clip_id": first, "note": "first, edited"})
    await expect(feed).to_have_text(["third", "first, edited"])
    await owner.call("clip_clear_viewer", {"session_id": session_id, "user_id": "v3"})
    await expect(feed).to_have_text(["first, edited"])

    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(feed).to_have_text(["first, edited"])
    await page.locator(".clip-delete").click()
    await expect(feed).to_have_count(0)
    await expect(page.locator("#feed-empty")).to_be_visible()


async def test_a_note_edit_is_left_with_cancel_or_escape(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    await clip(await connect(server, clients, "v1"), session_id, "as clipped")
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/streams/{session_id}")
    item = page.locator(".review-clip")
    edit = item.locator(".clip-edit")
    await expect(page.locator("#segments")).to_have_attribute("data-moments", "settled", timeout=10_000)

    await edit.focus()
    await page.keyboard.press("Enter")
    note = item.locator(".note-edit input")
    await expect(note).to_be_focused()
    # The open form fits a phone: no sideways scrolling.
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 390
    await page.keyboard.type(" and changed")
    await page.keyboard.press("Escape")
    await expect(item.locator(".note-edit")).to_have_count(0)
    await expect(item.locator(".note")).to_have_text("as clipped")
    await expect(edit).to_be_focused()

    await page.keyboard.press("Enter")  # opened again: what was typed before was dropped
    await expect(note).to_have_value("as clipped")
    await note.fill("not this either")
    await page.keyboard.press("Tab")  # Save
    await page.keyboard.press("Tab")  # Cancel
    await expect(item.locator(".note-edit button", has_text="Cancel")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(item.locator(".note-edit")).to_have_count(0)
    await expect(item.locator(".note")).to_have_text("as clipped")
    await expect(edit).to_be_focused()
    stored = await server.services.redis.hvals(server.services.keys.stream_clips(session_id))
    assert len(stored) == 1 and '"note":"as clipped"' in stored[0]


async def test_the_viewer_sees_the_streamers_edits_and_block_without_a_reload(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id, owner = await started(server, clients)
    other = await clip(await connect(server, clients, "carol"), session_id, "carol's")
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.use_token(server.token("bob"))
    page = await live(tab, f"/watch/{session_id}")
    await page.locator("#note-input").fill("mine")
    await page.locator("#clip-button").click()
    notes = page.locator("#mine li .note")
    await expect(notes).to_have_text(["mine"])
    mine_id = await page.locator("#mine li").get_attribute("data-clip-id")

    # Another viewer's clip edited: nothing for bob's list. His own edited, then deleted: shown live.
    await owner.call("clip_update", {"session_id": session_id, "clip_id": other, "note": "carol's, edited"})
    await owner.call("clip_update", {"session_id": session_id, "clip_id": mine_id, "note": "<i>edited</i>"})
    await expect(notes).to_have_text(["<i>edited</i>"])
    await owner.call("clip_delete", {"session_id": session_id, "clip_id": mine_id})
    await expect(notes).to_have_count(0)
    await expect(page.locator("#mine-empty")).to_be_visible()

    # Blocked: clipping turns off with the reason; unblocked: back on (the cooldown aside).
    server.services.clock.shift_ms = 60_000
    try:
        await owner.call("stream_block_viewer", {"session_id": session_id, "user_id": "bob"})
        await expect(page.locator("#clip-reason")).to_contain_text("turned off clipping for you")
        await expect(page.locator("#clip-button")).to_be_disabled()
        await page.reload()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(page.locator("#clip-reason")).to_contain_text("turned off clipping for you")
        await owner.call("stream_block_viewer", {"session_id": session_id, "user_id": "bob", "blocked": False})
        await expect(page.locator("#clip-button")).to_be_enabled()
    finally:
        server.services.clock.shift_ms = 0
    assert await page.locator("#mine i").count() == 0
    assert not tab.errors, tab.errors


async def test_a_note_half_typed_survives_a_reload(server: ServerUnderTest, tab: Tab, clients: list[Client]) -> None:
    session_id, _ = await started(server, clients)
    await clip(await connect(server, clients, "v1"), session_id, "as clipped")
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/streams/{session_id}")
    item = page.locator(".review-clip")
    await item.locator(".clip-edit").click()
    note = item.locator(".note-edit input")
    await note.press("End")
    await note.type(", the boss fight")

    await page.reload()  # or the tab closed and opened again: the editor comes back with its text
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(note).to_have_value("as clipped, the boss fight")
    await note.press("Enter")
    await expect(item.locator(".note-edit")).to_have_count(0)
    await expect(item.locator(".note")).to_have_text("as clipped, the boss fight")

    await page.reload()  # saved: nothing left to bring back
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(item.locator(".note")).to_have_text("as clipped, the boss fight")
    await expect(item.locator(".note-edit")).to_have_count(0)
    assert not tab.errors, tab.errors
