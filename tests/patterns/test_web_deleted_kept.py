"""In Chromium: a pattern deleted while a person has it open (anyone with its link may delete it)
is said deleted, and what was on their screen, their offline edits included, can be kept as a new
pattern of theirs (audit "patternphone": the page said "it may have been mistyped", and the
pattern and the edits were gone)."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import UUID, api, new_pattern, open_live, step


@pytest.mark.parametrize("width", [390, 1280])
async def test_a_pattern_deleted_while_offline_keeps_what_was_on_screen_as_a_new_one(
    server: ServerUnderTest, tab: Tab, width: int
) -> None:
    await tab.page.set_viewport_size({"width": width, "height": 844})
    tracks = [track("t1", steps=[False] * 16), track("t2", name="Snare", sampleId="snare", steps=[False] * 16)]
    session_id = await new_pattern(server, name="Night Groove", state={"tracks": tracks})
    page = await open_live(tab, f"/s/{session_id}")
    await page.context.set_offline(True)
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
    await step(page, "t1", 5).click()  # kept on the page, not saved
    await expect(step(page, "t1", 5)).to_have_attribute("aria-pressed", "true")

    await api(server, "DELETE", f"/api/sessions/{session_id}")  # another holder of the link
    await page.context.set_offline(False)
    await expect(page.locator("#not-found h1")).to_have_text("This pattern was deleted")
    await expect(page.locator("#not-found")).not_to_contain_text("mistyped")
    keep = page.get_by_role("button", name="Keep it as a new pattern")
    await expect(keep).to_be_focused()  # by keyboard: Enter keeps it
    # Each button's words on one line (at 390 px three in a row broke them: "Sessio / n").
    lines = await page.evaluate(
        """() => [...document.querySelectorAll("#not-found .row .button")].map((button) => {
            const range = document.createRange();
            range.selectNodeContents(button);
            return new Set([...range.getClientRects()].map((rect) => Math.round(rect.top))).size;
        })"""
    )
    assert lines == [1, 1, 1], lines
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(rf"/s/{UUID}$"))
    await expect(page.locator("#editor")).to_be_visible()
    copy_id = page.url.rsplit("/", 1)[1]
    assert copy_id != session_id
    kept = await api(server, "GET", f"/api/sessions/{copy_id}")
    assert kept["name"] == "Night Groove"
    assert [t["id"] for t in kept["state"]["tracks"]] == ["t1", "t2"]
    assert kept["state"]["tracks"][0]["steps"][5] is True  # the offline edit too
    await expect(step(page, "t1", 5)).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= width
    assert not tab.errors, tab.errors


async def test_a_pattern_deleted_while_live_is_said_deleted_not_mistyped(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    await api(server, "DELETE", f"/api/sessions/{session_id}")
    await expect(page.locator("#not-found h1")).to_have_text("This pattern was deleted")
    await expect(page.get_by_role("button", name="Keep it as a new pattern")).to_be_visible()
    # A link to no pattern at all is still said so, with nothing to keep.
    page = await tab.open("/s/00000000-0000-4000-8000-000000000000")
    await expect(page.locator("#not-found h1")).to_have_text("This session doesn't exist")
    await expect(page.get_by_role("button", name="Keep it as a new pattern")).to_be_hidden()
