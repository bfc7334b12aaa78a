"""The /api-docs page's outline and contents (audit "keyboard", finding 4)."""

from __future__ import annotations

import itertools

from playwright.async_api import Browser, expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest

OUTLINE = """
() => [...document.querySelectorAll("#operations h2, #operations h3, #operations h4")].map((h) => ({
  level: Number(h.tagName.slice(1)),
  text: h.textContent,
  operation: h.parentElement.dataset.operation ?? null,
  tag: h.parentElement.dataset.tag ?? null,
}))
"""


async def test_routes_are_headings_under_their_groups_heading(server: ServerUnderTest, tab: Tab) -> None:
    """A group ("voice") was an h2 and so was every route under it: the outline was flat."""
    page = await tab.open("/api-docs")
    await expect(page.locator('#operations[data-ready="true"]')).to_be_attached()
    outline = await page.evaluate(OUTLINE)
    groups = [h for h in outline if h["level"] == 2]
    routes = [h for h in outline if h["level"] == 3]
    assert len(groups) > 1 and len(routes) == await page.locator("[data-operation]").count()
    assert all(h["tag"] for h in groups), groups
    assert all(h["operation"] == h["text"] for h in routes), routes
    assert {h["text"] for h in outline if h["level"] == 4} == {"Parameters", "Body", "Body (optional)", "Responses"}
    assert outline[0]["level"] == 2
    for before, after in itertools.pairwise(outline):
        assert after["level"] <= before["level"] + 1, (before, after)  # no level skipped


async def test_a_contents_of_the_groups_leads_to_each(server: ServerUnderTest, tab: Tab) -> None:
    """No contents and no link within the page: a keyboard user who does not use a screen reader
    paged through some sixty screens to find a route."""
    page = await tab.open("/api-docs")
    await expect(page.locator('#operations[data-ready="true"]')).to_be_attached()
    contents = page.get_by_role("navigation", name="Contents")
    await expect(contents).to_be_visible()
    tags = await page.locator("#operations > [data-tag]").evaluate_all("(groups) => groups.map((g) => g.dataset.tag)")
    links = contents.get_by_role("link")
    await expect(links).to_have_text(tags)
    for i, tag in enumerate(tags):
        target = await links.nth(i).get_attribute("href")
        assert target and target.startswith("#"), target
        heading = page.locator(f'#operations > [data-tag="{tag}"] > h2')
        await expect(heading).to_have_id(target[1:])

    last = links.last
    await last.focus()
    await page.keyboard.press("Enter")
    heading = page.locator(f'#operations > [data-tag="{tags[-1]}"] > h2')
    await expect(heading).to_be_focused()
    await expect(heading).to_be_in_viewport()


async def test_the_contents_links_are_a_fingers_size_on_a_touch_screen(
    server: ServerUnderTest, browser: Browser
) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = await context.new_page()
        await page.goto(server.url + "/api-docs", wait_until="domcontentloaded")
        assert await page.evaluate("() => matchMedia('(pointer: coarse)').matches")
        links = page.get_by_role("navigation", name="Contents").get_by_role("link")
        await expect(links.first).to_be_visible()
        sizes = await links.evaluate_all("(links) => links.map((a) => [a.offsetWidth, a.offsetHeight])")
        assert sizes and all(width >= 44 and height >= 44 for width, height in sizes), sizes
        width = await page.evaluate("() => [innerWidth, document.documentElement.scrollWidth]")
        assert width[1] <= width[0], width  # no sideways scroll
    finally:
        await context.close()
