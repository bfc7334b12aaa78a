"""``GET /openapi.json`` answers the bytes written at start-up, with an ETag a client sends back
for a 304 (handlers/admin/openapi.py): a real server, aiohttp clients, and Chromium's own cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import expect

from handlers.admin.openapi import _written
from handlers.openapi_document import build_document
from handlers.openapi_registry import installed
from tests.browser import Tab
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest


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


async def test_an_app_started_again_with_the_same_routes_reuses_the_written_document(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    """The document depends on the routes and the list limit alone: a second app with the same
    ones (the same admin query model, made once per set of kinds) is answered from the bytes the
    first wrote, not built again (~21 ms a start); another list limit is another document."""
    first = await start_server(redis_process.url, tmp_path / "a")
    built = _written.cache_info().misses
    second = await start_server(redis_process.url, tmp_path / "b")
    other = await start_server(redis_process.url, tmp_path / "c", list_limit=7)
    try:
        assert installed(first.app) == installed(second.app)
        assert _written.cache_info().misses == built + 1  # the second app's found, the other's written
        assert await _body(second) == await _body(first)
        limits = {p["schema"]["maximum"] for p in _limit_parameters(json.loads(await _body(other)))}
        assert 7 in limits and 7 not in {
            p["schema"]["maximum"] for p in _limit_parameters(json.loads(await _body(first)))
        }
    finally:
        for server in (first, second, other):
            await server.stop()


async def _body(server: ServerUnderTest) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/openapi.json") as answer:
        return await answer.read()


def _limit_parameters(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        p
        for methods in document["paths"].values()
        for op in methods.values()
        for p in op.get("parameters", [])
        if p["name"] == "limit"
    ]
