"""The /api-docs page in real Chromium: every documented operation, grouped by capability."""

from __future__ import annotations

import aiohttp
from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest


async def test_the_page_lists_every_operation_of_the_document(tab: Tab, server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/openapi.json") as response:
        spec = await response.json()
    count = sum(len(methods) for methods in spec["paths"].values())
    page = await tab.open("/api-docs")
    await expect(page.locator('#operations[data-ready="true"]')).to_be_attached()
    await expect(page.locator("[data-operation]")).to_have_count(count)
    # A multipart body (no application/json content) renders with its file part.
    upload = page.locator('[data-operation="POST /voicebot/chunks"]')
    await expect(upload).to_contain_text("multipart/form-data")
    await expect(upload).to_contain_text('"file"')
    put = page.locator('[data-tag="patterns"] [data-operation="PUT /api/sessions/{session_id}"]')
    await expect(put).to_contain_text("If-Match")
