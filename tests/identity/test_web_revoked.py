"""In Chromium: a device whose identity is gone (signed out elsewhere, its cookie lost)."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import Browser, expect

from tests.browser import TOKEN_KEY, new_tab
from tests.helpers import ServerUnderTest

pytestmark = pytest.mark.timeout(180)


async def test_a_history_that_cannot_be_opened_does_not_say_connecting_forever(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    """Its badge said "Connecting…" for good when the page's first read failed (no socket follows)."""
    tab = await new_tab(browser, iserver)
    try:
        page = await tab.open("/api-docs")
        # A device whose identity is gone (its cookie with it): the first read is refused.
        record = json.dumps({"token": "x.y.z", "expires_at": 1, "device": True})
        await page.evaluate(f"localStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(record)})")
        page = await tab.open("/history")
        await expect(page.locator("#history-error")).to_contain_text("Could not open your history")
        await expect(page.locator("#connection")).to_be_hidden()
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()
