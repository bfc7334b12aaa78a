"""A person with the same stream open on two devices (a phone and a laptop signed in as the same
user) sees a clip made on one in "Your clips" on the other at once: live, once, in order, never
beside its own page's entry twice; another viewer's page never shows it; the streamer deleting it
takes it off both (PROTOCOL, "Your clips on every device")."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Browser, Page, Route, expect

from handlers.streams.answers import OwnClip, ViewerClip
from storage.streams.repository import StreamSessions
from tests.browser import Tab, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, started, stored_unannounced


# The page's reads of "Your clips" answered so far, once more than `arg` (the resource timing
# entries of GET …/clips/mine that have ended).
READS_DONE = """(arg) => {
  const done = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/clips/mine') && e.responseEnd > 0).length;
  return done > arg ? done : false;
}"""


async def live(tab: Tab, path: str) -> Page:
    page = await tab.open(path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


async def press(page: Page, note: str) -> None:
    await page.locator("#note-input").fill(note)
    await page.locator("#clip-button").click()
    await expect(page.locator("#confirmation")).to_contain_text("Clipped!")


async def test_a_clip_made_on_one_device_shows_live_on_the_other_once_and_in_order(
    server: ServerUnderTest, tab: Tab, browser: Browser, clients: list[Client]
) -> None:
    clock = server.services.clock
    session_id, owner = await started(server, clients)
    await tab.use_token(server.token("bob"))
    phone = await live(tab, f"/watch/{session_id}")
    tabs = [tab]
    try:
        laptop_tab = await new_tab(browser, server)  # another device of bob's: its own storage and token
        tabs.append(laptop_tab)
        await laptop_tab.use_token(server.token("bob"))
        laptop = await live(laptop_tab, f"/watch/{session_id}")
        carol_tab = await new_tab(browser, server)  # another viewer, watching the same stream
        tabs.append(carol_tab)
        await carol_tab.use_token(server.token("carol"))
        carol = await live(carol_tab, f"/watch/{session_id}")
        await expect(laptop.locator("#mine-empty")).to_be_visible()

        await press(phone, "from the phone")
        # On the laptop at once (no reload, no visibility change), and once on the phone (its
        # ack and its own announcement are the same clip).
        await expect(laptop.locator("#mine li .note")).to_have_text(["from the phone"])
        await expect(laptop.locator("#mine-empty")).to_be_hidden()
        await expect(phone.locator("#mine li .note")).to_have_text(["from the phone"])

        try:
            clock.shift_ms = 5_000  # past bob's cooldown: the laptop clips back
            await press(laptop, "from the laptop")
            clock.shift_ms = 10_000
            third = await connect(server, clients, "bob")  # a third device: no page, a client
            ack = await third.call("clip_submit", {"session_id": session_id, "note": "from the third"})
            assert ack["ok"] is True, ack
        finally:
            clock.shift_ms = 0
        newest_first = ["from the third", "from the laptop", "from the phone"]
        await expect(phone.locator("#mine li .note")).to_have_text(newest_first)
        await expect(laptop.locator("#mine li .note")).to_have_text(newest_first)

        # Carol's page shows her clip, and only hers: bob's notes never reached it.
        await press(carol, "carol's")
        await expect(carol.locator("#mine li .note")).to_have_text(["carol's"])
        await expect(phone.locator("#mine li .note")).to_have_text(newest_first)

        # The streamer deletes the phone's clip: gone from both of bob's pages.
        stored = await owner.call("clip_delete", {"session_id": session_id, "clip_id": await first_id(laptop)})
        assert stored["ok"] is True, stored
        for page in (phone, laptop):
            await expect(page.locator("#mine li .note")).to_have_text(newest_first[:2])
        await expect(carol.locator("#mine li .note")).to_have_text(["carol's"])
        for opened in tabs:
            assert not opened.errors, opened.errors
    finally:
        for opened in tabs[1:]:
            await opened.page.context.close()


async def first_id(page: Page) -> str:
    """The id of the oldest clip "Your clips" lists (the last line)."""
    clip_id = await page.locator("#mine li").last.get_attribute("data-clip-id")
    assert clip_id, "no clip listed"
    return clip_id


async def test_a_page_that_missed_clips_while_offline_reads_them_when_back(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """No replay of own_clip: a page back from offline reads its own clips (at its resubscription)."""
    session_id, _ = await started(server, clients)
    await tab.use_token(server.token("bob"))
    page = await live(tab, f"/watch/{session_id}")
    await page.context.set_offline(True)
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
    phone = await connect(server, clients, "bob")
    ack = await phone.call("clip_submit", {"session_id": session_id, "note": "while you were away"})
    assert ack["ok"] is True, ack
    await page.context.set_offline(False)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#mine li .note")).to_have_text(["while you were away"])


async def test_a_page_reads_its_clips_again_when_the_nodes_link_comes_back(
    server: ServerUnderTest, tab: Tab, clients: list[Client], redis: Any
) -> None:
    """The page stays connected while the node's pub/sub link to Redis drops and comes back: a
    clip announced meanwhile reached nobody, and the page's "Your clips" shows it once told."""
    session_id, _ = await started(server, clients)
    await tab.use_token(server.token("bob"))
    page = await live(tab, f"/watch/{session_id}")
    await expect(page.locator("#mine-empty")).to_be_visible()
    # Stored as a click stores it, announced to nobody: what a lost announcement leaves.
    await stored_unannounced(server, session_id, "bob", "announced to nobody")
    assert await redis.client_kill_filter(_type="pubsub") >= 1
    await expect(page.locator("#mine li .note")).to_have_text(["announced to nobody"])
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")  # never left
    assert not tab.errors, tab.errors


async def test_a_clip_cleared_before_its_own_clip_arrives_is_not_shown(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The clear's hint (the audience log) and a clip's own_clip (the user's channel) come by two
    links: a clip the page never listed, stored just before the streamer cleared the viewer, can
    be announced after the page read its clips again. It stays off "Your clips"; a later one shows."""
    session_id, owner = await started(server, clients)
    await tab.use_token(server.token("bob"))
    page = await live(tab, f"/watch/{session_id}")
    await expect(page.locator("#mine-empty")).to_be_visible()
    clip = await stored_unannounced(server, session_id, "bob", "cleared")
    # The page's reads of its clips done so far (the one at its connect): the hint makes one more.
    reads = await page.wait_for_function(READS_DONE, arg=0)
    done = await reads.json_value()
    cleared = await owner.call("clip_clear_viewer", {"session_id": session_id, "user_id": "bob"})
    assert cleared["removed"] == 1, cleared
    await page.wait_for_function(READS_DONE, arg=done)  # read after the hint: the clear is known
    late = OwnClip(session_id=session_id, clip=ViewerClip.model_validate(clip.for_viewer()))
    await StreamSessions(server.services.store).announce_own_clip("bob", late.model_dump_json())
    phone = await connect(server, clients, "bob")  # announced after the late one, on the same channel
    ack = await phone.call("clip_submit", {"session_id": session_id, "note": "after the clear"})
    assert ack["ok"] is True, ack
    await expect(page.locator("#mine li .note")).to_have_text(["after the clear"])
    assert not tab.errors, tab.errors


async def test_a_clear_told_while_the_pages_first_read_is_under_way_is_not_missed(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The page knows its viewer tag from its first read of its clips: a clear told before that
    read's answer (read before the clear) was dropped as nobody's, and the answer showed the
    cleared clip until the next reload."""
    session_id, owner = await started(server, clients)
    phone = await connect(server, clients, "bob")
    ack = await phone.call("clip_submit", {"session_id": session_id, "note": "cleared soon"})
    assert ack["ok"] is True, ack
    await tab.use_token(server.token("bob"))
    reads: list[asyncio.Event] = []
    release = asyncio.Event()

    async def hold_the_first(route: Route) -> None:
        reads.append(asyncio.Event())
        reads[-1].set()
        answer = await route.fetch()  # read now, before the clear
        if len(reads) == 1:
            await release.wait()  # its answer comes after the clear's hint
        await route.fulfill(response=answer)

    await tab.page.route("**/clips/mine*", hold_the_first)
    page = await tab.open(f"/watch/{session_id}")
    async with asyncio.timeout(10):
        while not reads:
            await asyncio.sleep(0.02)
    cleared = await owner.call("clip_clear_viewer", {"session_id": session_id, "user_id": "bob"})
    assert cleared["removed"] == 1, cleared
    try:
        async with asyncio.timeout(10):  # the hint, its tag not known yet, reads again
            while len(reads) < 2:
                await asyncio.sleep(0.02)
    finally:
        release.set()
    await expect(page.locator("#mine-empty")).to_be_visible()
    await expect(page.locator("#mine li")).to_have_count(0)
    assert not tab.errors, tab.errors
