"""``GET /openapi.json`` answers the bytes written at start-up, with an ETag a client sends back
for a 304 (handlers/admin/openapi.py): a real server, aiohttp clients, and Chromium's own cache."""

from __future__ import annotations

import json

import aiohttp
from playwright.async_api import expect

from handlers.openapi_document import build_document
from handlers.openapi_registry import installed
from tests.browser import Tab
from tests.helpers import ServerUnderTest


async def test_the_answer_is_the_document_with_an_etag_that_a_copy_held_is_answered_304_by(
    server: ServerUnderTest,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/openapi.json") as first:
            assert first.status == 200 and first.content_type == "application/json"
            etag, body = first.headers["ETag"], await first.read()
            assert first.headers["Cache-Control"] == "no-cache"
        assert json.loads(body) == build_document(installed(server.app), list_limit=server.services.limits.list_limit)
        assert etag.startswith('"') and etag.endswith('"') and len(etag) > 8
        async with http.get(server.url + "/openapi.json") as again:
            assert again.headers["ETag"] == etag and await again.read() == body  # the same bytes each time
        for held in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            async with http.get(server.url + "/openapi.json", headers={"If-None-Match": held}) as cached:
                assert cached.status == 304, held
                assert cached.headers["ETag"] == etag and await cached.read() == b""
        for stale in ('"other"', etag[:-2] + '"', ""):
            async with http.get(server.url + "/openapi.json", headers={"If-None-Match": stale}) as fresh:
                assert fresh.status == 200 and await fresh.read() == body, stale
        async with http.head(server.url + "/openapi.json") as head:
            assert head.status == 200 and int(head.headers["Content-Length"]) == len(body)
            assert head.headers["ETag"] == etag


async def test_api_docs_opened_again_takes_the_document_from_the_browsers_cache(
    tab: Tab, server: ServerUnderTest
) -> None:
    """The second visit revalidates: Chromium sends the ETag back, the server answers 304 (a few
    hundred bytes of headers over the wire, not ~280 KB), and the page lists every operation."""
    async with aiohttp.ClientSession() as http, http.get(server.url + "/openapi.json") as answer:
        count = sum(len(methods) for methods in (await answer.json())["paths"].values())
        size = len(await answer.read())
    statuses: list[int] = []
    tab.page.on("response", lambda r: statuses.append(r.status) if r.url.endswith("/openapi.json") else None)
    for _ in range(2):
        page = await tab.open("/api-docs")
        await expect(page.locator('#operations[data-ready="true"]')).to_be_attached()
        await expect(page.locator("[data-operation]")).to_have_count(count)
    transferred = await page.evaluate(
        "performance.getEntriesByType('resource').find(e => e.name.endsWith('/openapi.json')).transferSize"
    )
    assert 0 < transferred < size / 10, (transferred, statuses)
