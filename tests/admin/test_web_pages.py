"""The /admin page as people use it (issue 23): the columns, sorting by the headers, the detail
opening where it can be seen."""

from __future__ import annotations

import aiohttp
from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.admin.test_http import LONG_TTL_S, admin_token, new_pattern


async def test_columns_header_sorting_and_a_detail_in_view(tab: Tab, server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        root = await new_pattern(http)
        async with http.post(f"/api/sessions/{root}/remix", json={}) as response:
            assert response.status == 201
    for i in range(30):
        await server.create_session("alice", name=f"voice {i}")
    await tab.page.set_viewport_size({"width": 1000, "height": 600})
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#sessions tr")).to_have_count(25)
    headers = page.locator(".admin-table thead th")
    await expect(headers).to_contain_text(["Updated", "Status"])
    await expect(page.locator("#sessions tr").first.locator("td.status-cell")).to_have_text("Active")

    remixes = page.get_by_role("button", name="Remixes")
    await remixes.click()
    await expect(page.locator("th[data-sort='remixes']")).to_have_attribute("aria-sort", "descending")
    await expect(page.locator("#sessions tr").first).to_have_attribute("data-id", root)
    await remixes.click()
    await expect(page.locator("th[data-sort='remixes']")).to_have_attribute("aria-sort", "ascending")
    await expect(page.locator("#sessions tr").first).not_to_have_attribute("data-id", root)
    await expect(page.locator("th[data-sort='created']")).not_to_have_attribute("aria-sort", "ascending")

    # A row near the top of a long table: the detail (below the table) must come into view.
    await remixes.click()
    await expect(page.locator("#sessions tr").first).to_have_attribute("data-id", root)
    await page.locator("#sessions tr").first.click()
    await expect(page.locator("#detail-id")).to_have_text(root)
    await expect(page.locator("#detail-title")).to_be_in_viewport()


async def test_a_pattern_never_edited_counts_its_stored_size(tab: Tab, server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        pattern = await new_pattern(http)
    size = await server.services.redis.zscore(server.services.keys.admin_size(), pattern)
    assert size is not None and size > 0
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    row = page.locator(f'#sessions tr[data-id="{pattern}"]')
    await expect(row).to_have_count(1)
    await expect(row.locator("td").nth(7)).not_to_have_text("0 B")
    await expect(page.locator("#m-storage")).not_to_have_text("0 B")
    await expect(page.locator('#kinds tr[data-kind="pattern"] td').nth(5)).not_to_have_text("0 B")
