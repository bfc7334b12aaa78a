"""/admin visited with no identity (a fresh browser, a crawler running scripts) mints no guest.

The page used to ask for its data at once: the client, holding no token, made the visitor a new
guest (``POST /api/auth/guest``: a profile, a device, a refresh cookie, the per-address guest
counters) only to be refused ``403``. An operator page answers as for someone not signed in (its
own sign-in form) and stores nothing, in Redis or in the browser.
"""

from __future__ import annotations

from playwright.async_api import Request, expect
from redis.asyncio import Redis

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.admin.test_http import admin_token


async def keys_of(redis: Redis) -> set[str]:
    return {str(key) async for key in redis.scan_iter(count=1000)}


async def test_a_visit_without_identity_gets_the_sign_in_and_leaves_nothing_stored(
    tab: Tab, server: ServerUnderTest, redis: Redis
) -> None:
    auth_calls: list[str] = []

    def seen(request: Request) -> None:
        if "/api/auth/" in request.url or "/admin/" in request.url:
            auth_calls.append(f"{request.method} {request.url.removeprefix(server.url)}")

    tab.page.on("request", seen)
    before = await keys_of(redis)
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden")).to_be_visible()
    await page.wait_for_load_state("networkidle")
    assert not any("/api/auth/guest" in call or "/admin/" in call for call in auth_calls), auth_calls
    assert [c for c in await page.context.cookies() if c["name"] == "sessionhub_refresh"] == []
    assert await tab.stored_token() is None
    after = await keys_of(redis)
    assert sorted(after - before) == [], "stored by the visit"
    await expect(page.locator("#forbidden-message")).to_have_text("Sign in with a token that has the admin permission.")
    # The sign-in the page offers still works: an admin token pasted in shows the dashboard. The
    # token is a credential: the field masks it from anyone looking at the screen (or sharing it).
    await expect(page.locator("#token-input")).to_have_attribute("type", "password")
    await page.fill("#token-input", admin_token(server))
    await page.click("#token-form button")
    await expect(page.locator("#dashboard")).to_be_visible()
