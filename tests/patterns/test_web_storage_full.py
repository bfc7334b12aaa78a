"""In Chromium: a pattern create refused for a full storage says the server's reason.

The pattern page took every `503` for a lost answer: "No answer from the server, so it may have
been made: press again, which is safe", both halves false, and sent it again at once though the
server asked for a minute (audit verify42). The server's own `503` says why, and made nothing."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Request, expect
from redis.asyncio import Redis

from tests.browser import UNCONFIRMED_CREATE, new_tab
from tests.helpers import RedisProcess
from tests.patterns.test_web import open_live
from tests.test_storage_guard import admin, call, fill, guarded_server, own_redis  # noqa: F401 (fixtures)


async def test_a_new_pattern_refused_for_a_full_storage_says_why_and_is_not_sent_again(
    own_redis: RedisProcess,  # noqa: F811
    admin: Redis,  # noqa: F811
    tmp_path: Path,
    browser: Browser,
) -> None:
    server = await guarded_server(own_redis, tmp_path, admin)
    tab = await new_tab(browser, server)
    try:
        status, made, _ = await call(server, "POST", "/api/sessions")
        assert status == 201, made
        page = await open_live(tab, f"/s/{made['id']}")
        creates: list[Request] = []
        page.on(
            "request", lambda r: creates.append(r) if r.method == "POST" and r.url.endswith("/api/sessions") else None
        )
        await fill(admin, server)
        status, refusal, _ = await call(server, "POST", "/api/sessions")
        assert status == 503, refusal

        await page.locator("#new").click()
        await expect(page.locator("#toast")).to_have_text(refusal["message"])
        assert len(creates) == 1  # not sent again: the server asked for a minute
        await expect(page.locator("#new")).to_be_enabled()
        assert refusal["message"] != UNCONFIRMED_CREATE
    finally:
        await tab.page.context.close()
        await server.stop()
