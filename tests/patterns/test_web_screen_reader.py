"""The pattern editor in Chromium as a screen reader meets it: a heading that names the pattern,
controls that name their track, and other players' changes told."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_web import api, new_pattern, open_live
from tests.test_web_axe import axe_source

HEADING_RULE = """async () => {
  const result = await axe.run(document, { runOnly: ["page-has-heading-one"], resultTypes: ["violations"] });
  return result.violations.map((v) => v.id);
}"""


async def test_the_pattern_page_has_a_level_one_heading_that_follows_the_name(
    server: ServerUnderTest, browser: Browser
) -> None:
    """/patterns and /s/<id> had no level-one heading (axe page-has-heading-one): the name was only
    a text field, and a screen reader's list of headings offered nothing to start from."""
    tab = await new_tab(browser, server, bypass_csp=True)  # the CSP forbids axe's injection
    try:
        await tab.use_token(server.token("alice"))
        page = await open_live(tab, "/patterns")
        heading = page.get_by_role("heading", level=1)
        await expect(heading).to_have_text("Untitled Session")
        await page.add_script_tag(content=axe_source())
        assert await page.evaluate(HEADING_RULE) == []

        await page.locator("#pattern-name").fill("Jam one")
        await page.locator("#pattern-name").press("Enter")
        await expect(heading).to_have_text("Jam one")
        session_id = page.url.rsplit("/", 1)[1]
        await api(server, "PATCH", f"/api/sessions/{session_id}", {"name": "Jam two"})  # another's rename
        await expect(heading).to_have_text("Jam two")
        await expect(page.locator("#pattern-name")).to_have_value("Jam two")
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()


async def test_each_track_name_field_names_its_track(server: ServerUnderTest, tab: Tab) -> None:
    """Every track's name field was called "Track name" while its other controls said their track
    ("Mute Snare"): tabbing through, nothing told whose name a field held but its text."""
    session_id = await new_pattern(server)
    await tab.use_token(server.token("alice"))
    page = await open_live(tab, f"/s/{session_id}")
    await page.get_by_role("combobox", name="Add a track").select_option(label="Snare")
    await page.get_by_role("button", name="Add track").click()
    rows = page.locator("#grid .track-row")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0).locator(".track-name")).to_have_accessible_name("Name of track Kick")
    await expect(rows.nth(1).locator(".track-name")).to_have_accessible_name("Name of track Snare")
    field = rows.nth(1).locator(".track-name")
    await field.fill("Big Snare")
    await field.press("Enter")
    await expect(field).to_have_accessible_name("Name of track Big Snare")
    await expect(rows.nth(1).locator(".mute")).to_have_accessible_name("Mute Big Snare")
