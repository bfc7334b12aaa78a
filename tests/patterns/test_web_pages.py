"""The pattern editor's sharing controls and presence as people use them (issue 23)."""

from __future__ import annotations

import json
import re

from playwright.async_api import Browser, expect

from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_web import UUID, api, new_pattern, open_live

SAME_COLOUR = json.dumps({"name": "Player 101", "colour": "#e03131"})


async def test_publish_from_the_editor_and_a_published_copys_invite(server: ServerUnderTest, tab: Tab) -> None:
    await tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    source = await new_pattern(server)
    page = await open_live(tab, f"/s/{source}")
    await page.locator("#publish").click()
    await expect(page.locator("#toast")).to_contain_text("Published!")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(rf"{re.escape(server.url)}/s/{UUID}", copied) and source not in copied
    published = copied.rsplit("/", 1)[1]
    assert (await api(server, "GET", f"/api/sessions/{published}"))["immutable"] is True
    assert page.url.endswith(f"/s/{source}")  # the source stays open, editable
    await expect(page.locator("#tempo")).to_be_enabled()

    await page.goto(copied, wait_until="domcontentloaded")
    await expect(page.locator("#readonly-banner")).to_be_visible()
    await expect(page.locator("#publish")).to_be_hidden()
    await page.locator("#invite").click()
    await expect(page.locator("#toast")).to_contain_text("Link copied!")
    await expect(page.locator("#toast")).not_to_contain_text("can edit")


async def test_avatars_show_display_names_in_distinct_colours(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    session_id = await new_pattern(server)
    other = await new_tab(browser, server)
    try:
        for who, name in ((tab, "Ada Lovelace"), (other, "Bob Stone")):
            await who.use_token(server.token(name.split()[0].lower(), name=name))
            # Both pick the same colour: the page must still tell them apart.
            await who.page.add_init_script(
                f"sessionStorage.setItem('sessionhub.pattern.me', {json.dumps(SAME_COLOUR)})"
            )
        first = await open_live(tab, f"/s/{session_id}")
        second = await open_live(other, f"/s/{session_id}")
        for page in (first, second):
            avatars = page.locator("#players li.avatar")
            await expect(avatars).to_have_count(2)
            assert sorted(await avatars.all_text_contents()) == ["AL", "BS"]
            colours = await avatars.evaluate_all("(items) => items.map((i) => getComputedStyle(i).backgroundColor)")
            assert len(set(colours)) == 2, colours
            await expect(page.locator("#players li.avatar[title='Ada Lovelace']")).to_have_count(1)
    finally:
        await other.page.context.close()
