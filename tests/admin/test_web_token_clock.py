"""/admin judges a pasted token's expiry by the server's answer, not by the browser's clock.

The sign-in compared the token's ``exp`` (the server's clock) with ``Date.now()`` (the phone's or
laptop's): a browser whose clock runs hours ahead refused a good token as expired, and one behind
sent a dead one and said only that the server did not take it. The server now says whether it has
expired (its 401 "token expired"); a token taken is kept with its life counted on this browser's
clock from then (``client.js`` ``keepToken``), so the dashboard stays across a reload.
"""

from __future__ import annotations

import time

from playwright.async_api import expect

from auth.permissions import Permission
from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.test_web_pages_today import SIGN_IN, sign_in_by_keyboard

HOUR_S = 3600


async def test_a_browser_whose_clock_runs_hours_ahead_takes_a_fresh_admin_token(
    tab: Tab, server: ServerUnderTest
) -> None:
    await tab.page.clock.install(time=time.time() + 3 * HOUR_S)
    token = server.token("root", perms=(Permission.ADMIN,), ttl_s=HOUR_S)  # fresh on the server's clock
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden-message")).to_have_text(SIGN_IN)
    await sign_in_by_keyboard(page, token)
    # Before: "That token has expired. Make a new one and paste it here." (exp hours behind Date.now()).
    await expect(page.locator("#dashboard")).to_be_visible()
    stored = await tab.stored_token()
    assert stored is not None and stored["token"] == token
    await page.reload()  # kept, and not taken for expired on this clock either
    await expect(page.locator("#dashboard")).to_be_visible()
    await expect(page.locator("#forbidden")).to_be_hidden()


async def test_a_browser_whose_clock_runs_hours_behind_is_told_a_dead_token_has_expired(
    tab: Tab, server: ServerUnderTest
) -> None:
    await tab.page.clock.install(time=time.time() - 3 * HOUR_S)
    now_s = server.services.clock.now_s()
    dead, _ = server.tokens.mint(user_id="root", now_s=now_s - 2 * HOUR_S, ttl_s=HOUR_S, perms=(Permission.ADMIN,))
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden-message")).to_have_text(SIGN_IN)
    await sign_in_by_keyboard(page, dead)
    # Before: "This server does not take that token (revoked, expired, or made for another server)."
    # (on this clock it had an hour to go: the page sent it, and did not read the server's answer).
    await expect(page.locator("#forbidden-message")).to_have_text(
        "That token has expired. Make a new one and paste it here."
    )
    await expect(page.locator("#dashboard")).to_be_hidden()
    assert await tab.stored_token() is None, "a refused token was kept"
