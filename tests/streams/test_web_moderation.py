"""The dashboard's clip controls in real Chromium against a real server: live clips get the
moderation buttons loaded ones have, and Delete asks first and keeps the keyboard's place."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Dialog, Locator, Page, expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, http, started
from tests.streams.test_web_as_now import clip, live


class Dialogs:
    """The page's dialogs (window.confirm), each answered by the next of ``answers``."""

    def __init__(self, page: Page) -> None:
        self.answers: list[bool] = []
        self.messages: list[str] = []
        self.answered = asyncio.Event()
        page.on("dialog", self._answer)

    async def _answer(self, dialog: Dialog) -> None:
        self.messages.append(dialog.message)
        if self.answers.pop(0):
            await dialog.accept()
        else:
            await dialog.dismiss()
        self.answered.set()

    async def press(self, page: Page, key: str, *, answer: bool) -> str:
        """Press ``key``, answer the dialog it opens; its message."""
        self.answered.clear()
        self.answers.append(answer)
        await page.keyboard.press(key)
        await asyncio.wait_for(self.answered.wait(), timeout=10)
        return self.messages[-1]


async def test_live_clips_get_the_moderation_buttons_loaded_ones_have(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A clip that arrived live showed Mark clipped, Edit note and Delete only: Block viewer and
    Clear their clips (which need the viewer's user id, never in an event) came with a reload."""
    clock = server.services.clock
    session_id, _owner = await started(server, clients)
    v1, v2 = await connect(server, clients, "v1"), await connect(server, clients, "v2")
    await clip(v1, session_id, "loaded")
    await server.services.identities.rename("v2", "Vee Two")
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/streams/{session_id}")
    clips = page.locator('.segment[data-index="1"] .review-clip')
    await expect(clips).to_have_count(1)
    await expect(clips.locator(".clip-block")).to_have_count(1)

    try:
        clock.shift_ms = 10_000  # past v1's cooldown
        await clip(v1, session_id, "v1 again, live")  # a viewer listed already
        await clip(v2, session_id, "v2, live")  # a viewer the page has not seen
    finally:
        clock.shift_ms = 0
    await expect(clips).to_have_count(3)
    again, new = clips.filter(has_text="v1 again, live"), clips.filter(has_text="v2, live")
    await expect(clips.locator(".clip-block")).to_have_count(3)
    await expect(clips.locator(".clip-clear")).to_have_count(3)
    # The viewer's name comes with it, as on a loaded clip (never their user id).
    await expect(new.locator(".who")).to_have_text("Vee Two")
    await expect(new.locator(".clip-block")).to_have_accessible_name("Block viewer, Vee Two")
    await expect(new.locator(".clip-clear")).to_have_accessible_name("Clear their clips, Vee Two")
    assert "v2" not in (await new.inner_text()).split()

    await new.locator(".clip-block").click()
    await expect(page.locator("#notice")).to_have_text("Vee Two may no longer clip this stream.")
    status, body = await http(server, "GET", f"/api/streams/{session_id}/blocked")
    assert status == 200 and body["blocked"] == ["v2"], body

    page.once("dialog", lambda dialog: dialog.accept())  # "Remove every clip of …?"
    await again.locator(".clip-clear").click()
    await expect(page.locator("#notice")).to_contain_text("Removed 2 clips of")
    await expect(clips).to_have_count(1)
    await expect(clips.locator(".note")).to_have_text(["v2, live"])
    assert not tab.errors, tab.errors


async def test_delete_asks_first_and_the_focus_goes_on_to_the_next_clip(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Delete removed a viewer's clip at once, next to Edit note, and the keyboard's focus
    dropped to the page with its line."""
    session_id, page, clips = await three_clips_reviewed(server, clients, tab, ("v1", "v2", "v3"))
    dialogs = Dialogs(page)
    stored = server.services.keys.stream_clips(session_id)

    # Asked first; "Cancel" deletes nothing, and the focus stays.
    await clips.nth(0).locator(".clip-delete").focus()
    asked = await dialogs.press(page, "Enter", answer=False)
    assert re.fullmatch(r"Delete the clip at 0:00:\d\d by viewer [0-9a-f]+\? This cannot be undone\.", asked), asked
    await expect(clips.locator(".clip-delete").nth(0)).to_be_focused()
    await expect(clips).to_have_count(3)
    assert await server.services.redis.hlen(stored) == 3

    # Deleted: the focus goes on to the next clip's Delete.
    await dialogs.press(page, "Enter", answer=True)
    await expect(clips.locator(".note")).to_have_text(["clip 2", "clip 3"])
    await expect(clips.nth(0).locator(".clip-delete")).to_be_focused()
    # The last clip deleted: to the one before it.
    await clips.nth(1).locator(".clip-delete").focus()
    await dialogs.press(page, "Space", answer=True)
    await expect(clips.locator(".note")).to_have_text(["clip 2"])
    await expect(clips.nth(0).locator(".clip-delete")).to_be_focused()
    # The segment's only clip deleted: to its clip list.
    await dialogs.press(page, "Enter", answer=True)
    await expect(clips).to_have_count(0)
    await expect(page.locator('.segment[data-index="1"] .clips-title')).to_be_focused()
    assert await server.services.redis.hlen(stored) == 0
    assert not tab.errors, tab.errors


async def test_clear_their_clips_hands_the_focus_to_the_next_clip_left(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Clear their clips removed its own line (and the viewer's others) under the keyboard's
    focus, which dropped to the page: it goes on to the nearest clip left."""
    # The next line is the same viewer's.
    _session_id, page, clips = await three_clips_reviewed(server, clients, tab, ("v1", "v1", "v2"))
    dialogs = Dialogs(page)
    await expect(clips.locator(".clip-clear")).to_have_count(3)

    await clips.nth(0).locator(".clip-clear").focus()
    await dialogs.press(page, "Enter", answer=True)
    await expect(page.locator("#notice")).to_contain_text("Removed 2 clips of")
    await expect(clips.locator(".note")).to_have_text(["clip 3"])
    await expect(clips.nth(0).locator(".clip-clear")).to_be_focused()
    # The segment's last viewer cleared: to its clip list.
    await dialogs.press(page, "Space", answer=True)
    await expect(clips).to_have_count(0)
    await expect(page.locator('.segment[data-index="1"] .clips-title')).to_be_focused()


async def three_clips_reviewed(
    server: ServerUnderTest, clients: list[Client], tab: Tab, viewers: tuple[str, str, str]
) -> tuple[str, Page, Locator]:
    """A live stream whose viewers clipped 10 s apart ("clip 1".."clip 3"), open on its owner's
    dashboard: the stream, the page and the first segment's clip lines."""
    clock = server.services.clock
    session_id, _owner = await started(server, clients)
    try:
        for n, user in enumerate(viewers):
            clock.shift_ms = 10_000 * n
            await clip(await connect(server, clients, user), session_id, f"clip {n + 1}")
    finally:
        clock.shift_ms = 0
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/streams/{session_id}")
    clips = page.locator('.segment[data-index="1"] .review-clip')
    await expect(clips.locator(".note")).to_have_text(["clip 1", "clip 2", "clip 3"])
    return session_id, page, clips
