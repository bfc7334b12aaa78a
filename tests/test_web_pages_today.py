"""Today's changed pages in real Chromium: /admin's own sign-in (no identity yet), by keyboard
alone, on a phone, each refusal said in words with nothing stored, signed in across a reload and
signed out cleanly; /tg_auth while its redemption is sent again.

tests/web_pages.py lists the sign-in state too ("admin-sign-in"), so the phone, touch, axe and
keyboard tests of every page look at it as well.
"""

from __future__ import annotations

import asyncio
import time

from playwright.async_api import Page, Route, expect
from redis.asyncio import Redis

from auth.permissions import Permission
from tests.admin.test_http import admin_token
from tests.browser import Tab
from tests.helpers import ServerUnderTest

SIGN_IN = "Sign in with a token that has the admin permission."
NARROWEST = {"width": 320, "height": 640}


async def keys_of(redis: Redis) -> set[str]:
    return {str(key) async for key in redis.scan_iter(count=1000)}


async def tab_to(page: Page, selector: str, presses: int = 30) -> None:
    """Tab from the top of the page until ``selector`` has the focus (no mouse)."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await page.locator(selector).evaluate("e => e === document.activeElement"):
            return
    raise AssertionError(f"{selector} is not reached by Tab")


async def sign_in_by_keyboard(page: Page, token: str) -> None:
    await tab_to(page, "#token-input")
    await page.keyboard.insert_text(token)
    await page.keyboard.press("Enter")


async def test_a_pasted_admin_token_signs_in_by_keyboard_and_stays_signed_in_across_a_reload(
    tab: Tab, server: ServerUnderTest
) -> None:
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden-message")).to_have_text(SIGN_IN)
    await sign_in_by_keyboard(page, admin_token(server))
    await expect(page.locator("#dashboard")).to_be_visible()
    await page.reload()
    await expect(page.locator("#dashboard")).to_be_visible()
    await expect(page.locator("#forbidden")).to_be_hidden()


async def refused_with(tab: Tab, server: ServerUnderTest, redis: Redis, token: str, words: str) -> None:
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden-message")).to_have_text(SIGN_IN)
    before = await keys_of(redis)
    await sign_in_by_keyboard(page, token)
    await expect(page.locator("#forbidden-message")).to_have_text(words)
    await expect(page.locator("#dashboard")).to_be_hidden()
    assert await tab.stored_token() is None, "a refused token was kept"
    assert sorted(await keys_of(redis) - before) == []
    await page.reload()  # and nothing of it comes back
    await expect(page.locator("#forbidden-message")).to_have_text(SIGN_IN)


async def test_a_token_without_the_admin_permission_is_refused_in_words_and_not_kept(
    tab: Tab, server: ServerUnderTest, redis: Redis
) -> None:
    user = server.token("alice", perms=(Permission.READ_OWN, Permission.CREATE))
    await refused_with(tab, server, redis, user, "That token does not have the admin permission.")


async def test_an_expired_token_is_refused_in_words_and_not_kept(
    tab: Tab, server: ServerUnderTest, redis: Redis
) -> None:
    expired, _ = server.tokens.mint(user_id="root", now_s=time.time() - 7200, ttl_s=3600, perms=(Permission.ADMIN,))
    await refused_with(tab, server, redis, expired, "That token has expired. Make a new one and paste it here.")


async def test_text_that_is_no_token_is_refused_in_words_and_not_kept(
    tab: Tab, server: ServerUnderTest, redis: Redis
) -> None:
    await refused_with(tab, server, redis, "not-a-token", "That is not a token.")


async def test_the_sign_in_fits_the_narrowest_phone(tab: Tab, server: ServerUnderTest) -> None:
    await tab.page.set_viewport_size(NARROWEST)
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden-message")).to_have_text(SIGN_IN)
    widths = await page.evaluate("() => [window.innerWidth, document.documentElement.scrollWidth]")
    assert widths[1] <= widths[0], widths
    for selector in ("#token-input", "#token-form button"):
        box = await page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= NARROWEST["width"], (selector, box)


async def test_a_token_this_server_did_not_sign_is_refused_in_words_and_not_kept(
    tab: Tab, server: ServerUnderTest, redis: Redis
) -> None:
    head, payload, _ = admin_token(server).split(".")
    forged = f"{head}.{payload}.{'A' * 43}"
    await refused_with(
        tab,
        server,
        redis,
        forged,
        "This server does not take that token (revoked, expired, or made for another server).",
    )


async def test_signing_out_after_a_pasted_token_leaves_the_sign_in_and_nothing_stored(
    tab: Tab, server: ServerUnderTest
) -> None:
    page = await tab.open("/admin")
    await sign_in_by_keyboard(page, admin_token(server))
    await expect(page.locator("#dashboard")).to_be_visible()
    await tab_to(page, "#identity-name")
    await page.keyboard.press("Enter")
    await tab_to(page, "#identity-signout")
    await page.keyboard.press("Enter")
    await page.wait_for_url(server.url + "/")
    assert await tab.stored_token() is None
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden-message")).to_have_text(SIGN_IN)
    await expect(page.locator("#dashboard")).to_be_hidden()


async def test_the_check_of_a_pasted_token_says_so_and_a_lost_answer_is_said_and_keeps_nothing(
    tab: Tab, server: ServerUnderTest
) -> None:
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden-message")).to_have_text(SIGN_IN)
    held: asyncio.Future[Route] = asyncio.get_running_loop().create_future()

    async def hold(route: Route) -> None:
        if not held.done():
            held.set_result(route)
        else:
            await route.continue_()

    await page.route("**/admin/metrics", hold)
    await sign_in_by_keyboard(page, admin_token(server))
    await expect(page.locator("#forbidden-message")).to_have_text("Checking the token…")
    await (await held).abort("connectionreset")
    await expect(page.locator("#forbidden-message")).to_have_text(
        "The token could not be checked: the server cannot be reached. Try again."
    )
    assert await tab.stored_token() is None
    await page.keyboard.press("Enter")  # the focus is still in the field: Enter again
    await expect(page.locator("#dashboard")).to_be_visible()
