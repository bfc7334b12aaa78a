"""The /admin page shows times, and takes the days of its filters, in the operator's time zone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from playwright.async_api import Browser, expect

from tests.admin.test_http import LONG_TTL_S, admin_token
from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest

# Noon UTC: the next day in Kiritimati (UTC+14), the same morning in Los Angeles (UTC-8 then).
MADE_AT = datetime(2025, 11, 26, 12, 0, 0, tzinfo=UTC)
ZONES = {
    "Pacific/Kiritimati": ("2025-11-27 02:00:00", "2025-11-27", "2025-11-26"),
    "America/Los_Angeles": ("2025-11-26 04:00:00", "2025-11-26", "2025-11-27"),
}


@pytest_asyncio.fixture(params=sorted(ZONES))
async def zoned_tab(request: pytest.FixtureRequest, browser: Browser, server: ServerUnderTest) -> AsyncIterator[Tab]:
    opened = await new_tab(browser, server, timezone_id=request.param)
    yield opened
    await opened.page.context.close()
    assert not opened.errors, "the page reported errors:\n" + "\n".join(opened.errors + opened.console)


async def test_a_sessions_times_and_the_created_days_are_the_operators_local_ones(
    zoned_tab: Tab, server: ServerUnderTest
) -> None:
    """The table showed UTC (toISOString) and a picked day was a UTC day, with nothing saying so:
    in Kiritimati a session made at 02:00 local showed as made the day before, and filtering on
    its local day found nothing."""
    zone = await zoned_tab.page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    shown, its_day, other_day = ZONES[zone]
    clock = server.services.clock
    clock.shift_ms = int(MADE_AT.timestamp() * 1000) - (clock.now_ms() - clock.shift_ms)
    await server.create_session("alice")
    await zoned_tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await zoned_tab.open("/admin")
    rows = page.locator("#sessions tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td").nth(3)).to_have_text(shown)
    await expect(page.locator("#time-zone")).to_contain_text(f"({zone})")

    await page.fill("#f-from", its_day)
    await page.fill("#f-to", its_day)
    await page.click("#filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await page.fill("#f-from", other_day)
    await page.fill("#f-to", other_day)
    await page.click("#filters button[type=submit]")
    await expect(page.locator("#sessions-empty")).to_be_visible()
    await expect(rows).to_have_count(0)
