"""In Chromium: a device Redis lost (its last second lost in a crash) is opened again by its token.

A guest made in that second worked on its token, and its next refresh was refused "expired" for
good: the page said the identity was gone, and an hour later the guest was locked out of what it
had made (audit "lastsecond"). The page sends its token, not yet run out, with its refresh, and
the server opens the device again under its id (tests/identity/test_restored_redis.py)."""

from __future__ import annotations

import json
import re
import time

from playwright.async_api import expect

from storage.identity.repository import split_credential
from handlers.auth_cookie import COOKIE_NAME
from tests.browser import TOKEN_KEY, Tab
from tests.helpers import ServerUnderTest


async def test_a_guest_whose_device_redis_lost_stays_who_it_is(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/streams")
    await page.locator("#title-input").fill("Made in the lost second")
    await page.locator("#create-button").click()
    await expect(page).to_have_url(re.compile(r"/streams/[0-9a-f-]{36}$"))
    await expect(page.locator("#identity")).to_have_attribute("data-user-id", re.compile("^guest-"))
    user_id = await page.locator("#identity").get_attribute("data-user-id")

    cookies = {c["name"]: c["value"] for c in await page.context.cookies(server.url + "/api/auth/refresh")}
    parts = split_credential(cookies[COOKIE_NAME])
    assert parts is not None
    keys = server.services.keys
    await server.services.redis.delete(keys.family(parts[0]), keys.user_families(str(user_id)))  # lost
    # The page's token comes near its end (as after most of an hour): its next call refreshes.
    stored = json.loads(await page.evaluate(f"localStorage.getItem({json.dumps(TOKEN_KEY)})"))
    now = time.time()
    stored |= {"expires_at": now + 20, "obtained_at": now - 3580}
    await page.evaluate(f"localStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(json.dumps(stored))})")

    refreshes: list[int] = []
    page.on("response", lambda r: refreshes.append(r.status) if r.url.endswith("/api/auth/refresh") else None)
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#identity")).to_have_attribute("data-user-id", user_id or "")
    await expect(page.locator("#identity-lost")).to_have_count(0)
    assert await server.services.redis.exists(keys.family(parts[0]))  # the device, opened again
    assert refreshes and set(refreshes) == {200}, refreshes
    now_held = {c["name"]: c["value"] for c in await page.context.cookies(server.url + "/api/auth/refresh")}
    assert now_held[COOKIE_NAME] != cookies[COOKIE_NAME]  # a fresh cookie of the same device
    assert now_held[COOKIE_NAME].startswith(parts[0] + ".")
