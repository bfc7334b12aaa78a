"""web/css/app.css applies to the end: what its later rules lay out is checked in Chromium.

A rule left without its closing brace swallows every rule after it, so these look at rules from the
second half of the file, each through what a person would see: a floating FAB, separated figures,
controls inside their panel, a visible orphan marker, coloured chart bars.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Locator, Page, expect

from tests.browser import Tab
from tests.streams.helpers import create_stream, http
from tests.helpers import Client, ServerUnderTest
from tests.admin.test_http import DAY_MS, LONG_TTL_S, admin_token

PHONE = {"width": 390, "height": 844}
BLACK = "rgb(0, 0, 0)"


async def box(locator: Locator) -> dict[str, float]:
    """The element's bounding box; it must be laid out."""
    found = await locator.bounding_box()
    assert found is not None, f"{locator} is not laid out"
    return found


async def test_the_fab_floats_inside_a_phone_viewport(server: ServerUnderTest, tab: Tab) -> None:
    await tab.page.set_viewport_size(PHONE)
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    fab = page.locator("#sessionhub-fab")
    await expect(page.locator("#fab-new")).to_be_enabled()
    assert await fab.evaluate("el => getComputedStyle(el).position") == "fixed"
    placed = await box(fab)
    assert placed["x"] >= 0 and placed["y"] >= 0
    assert placed["x"] + placed["width"] <= PHONE["width"]
    assert placed["y"] + placed["height"] <= PHONE["height"]


async def _dashboard_with_moments(server: ServerUnderTest, tab: Tab, clients: list[Client]) -> Page:
    clock = server.services.clock
    session_id = await create_stream(server, title="Layout")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    try:
        for user, at_ms in [("v1", 3_000), ("v2", 4_000)]:
            clock.shift_ms = at_ms
            viewer = Client(server.url, server.token(user))
            clients.append(viewer)
            await viewer.connect()
            assert (await viewer.call("clip_submit", {"session_id": session_id, "note": user}))["ok"] is True
    finally:
        clock.shift_ms = 0
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator(".moment .count")).to_have_text(["2 clicks"])
    return page


async def test_a_moments_offset_and_count_do_not_run_together(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    page = await _dashboard_with_moments(server, tab, clients)
    offset = await box(page.locator(".moment .offset"))
    count = await box(page.locator(".moment .count"))
    # On one line, with a gap between them (the flex row's gap), not "0:00:032 clicks".
    assert count["x"] >= offset["x"] + offset["width"] + 4, (offset, count)


async def test_export_controls_stay_inside_their_panel(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    page = await _dashboard_with_moments(server, tab, clients)
    for size in ({"width": 1280, "height": 800}, PHONE):
        await page.set_viewport_size(size)
        panel = await box(page.locator("#review"))
        right = panel["x"] + panel["width"]
        controls = page.locator("#export-form > *")
        for i in range(await controls.count()):
            control = controls.nth(i)
            if not await control.is_visible():
                continue
            placed = await box(control)
            assert placed["x"] + placed["width"] <= right + 0.5, (size, await control.evaluate("e => e.outerHTML"))


async def test_the_admin_table_marks_orphans_visibly(server: ServerUnderTest, tab: Tab) -> None:
    await server.create_session("alice")
    server.services.clock.shift_ms = 100 * DAY_MS
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    cell = page.locator('#sessions tr[data-orphaned="true"] td').first
    await expect(cell).to_be_visible()
    marker: dict[str, Any] = await cell.evaluate(
        "el => { const s = getComputedStyle(el, '::after'); return {content: s.content, color: s.color}; }"
    )
    assert marker == {"content": '" orphan"', "color": "rgb(163, 90, 0)"}


async def test_chart_bars_are_coloured_and_the_last_label_is_inside(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/history")
    bars = page.locator(".day-chart-svg rect.bar")
    await expect(bars.first).to_be_attached()
    fills = set(await bars.evaluate_all("rects => rects.map((r) => getComputedStyle(r).fill)"))
    assert BLACK not in fills, fills
    await expect(page.locator(".day-chart-svg .axis.last")).to_be_visible()
    # Both boxes in one evaluation, of the chart on the page then: the page draws the chart anew
    # whenever its figures reload, so an element looked up before may be detached (all zeros)
    # by the time it is measured. Measured again until one drawn chart gives both.
    measured = await page.wait_for_function(
        """() => {
            const svg = document.querySelector('.day-chart-svg');
            const label = svg && svg.querySelector('.axis.last');
            if (!label) return null;
            const [c, l] = [svg.getBoundingClientRect(), label.getBoundingClientRect()];
            return c.width > 0 && l.width > 0 ? [{x: c.x, width: c.width}, {x: l.x, width: l.width}] : null;
        }"""
    )
    chart, last = await measured.json_value()
    assert last["x"] + last["width"] <= chart["x"] + chart["width"] + 0.5, (chart, last)
