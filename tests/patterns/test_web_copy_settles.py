"""A copy (Remix, Send Copy, Publish) has the edits the player made just before asking for it."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.browser import SocketGate, Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import UUID, new_pattern, open_live, step, stored_steps


async def test_a_remix_right_after_an_edit_has_the_edit(server: ServerUnderTest, tab: Tab) -> None:
    """The remix is made over HTTP from the stored session and overtook the step still on its way
    over the socket: the copy opened without the step the player had just set."""
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    gate.mute()  # the step's op is on its way, slowly
    await step(page, "t1", 6).click()
    await gate.until_kept("pattern_op")
    await page.locator("#remix").click()
    await expect(page.locator("#toast")).to_have_text("Saving your latest changes first…")
    gate.unmute()
    await expect(page).to_have_url(re.compile(rf"/s/(?!{session_id}){UUID}$"))
    copy_id = page.url.rsplit("/", 1)[1]
    assert (await stored_steps(server, copy_id))[6] is True
    assert (await stored_steps(server, session_id))[6] is True
