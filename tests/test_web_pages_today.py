"""Today's changed pages in real Chromium: /admin's own sign-in (no identity yet), by keyboard
alone, on a phone, each refusal said in words with nothing stored, signed in across a reload and
signed out cleanly; /tg_auth while its redemption is sent again.

tests/web_pages.py lists the sign-in state too ("admin-sign-in"), so the phone, touch, axe and
keyboard tests of every page look at it as well.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from playwright.async_api import Browser, Page, Route, expect
from redis.asyncio import Redis

from auth.permissions import Permission
from tests.admin.test_http import admin_token
from tests.browser import Tab, new_tab
from tests.identity.test_web_link import device_link, guest_with_a_session
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_web_op_retry import DeafGate
from tests.test_retry_history_web import upload
from tests.test_web_axe import BLOCKING, RUN_AXE, axe_source
from tests.test_web_stalled_actions import live
from tests.web_pages import visit

SIGN_IN = "Sign in with a token that has the admin permission."
NARROWEST = {"width": 320, "height": 640}


async def keys_of(redis: Redis) -> set[str]:
    return {str(key) async for key in redis.scan_iter(count=1000)}


async def tab_to(page: Page, selector: str, presses: int = 30, *, key: str = "Tab") -> None:
    """Tab (or ``key``: Shift+Tab goes back) from where the focus is until ``selector`` has it
    (no mouse)."""
    for _ in range(presses):
        await page.keyboard.press(key)
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
    # Nobody is refused yet: the heading and the tab's title ask to sign in, not "403 — Forbidden".
    await expect(page.locator("#forbidden h1")).to_have_text("Sign in")
    await expect(page).to_have_title("Sign in · Admin · sessionhub")
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
    # The sign-in leaves the keyboard on the dashboard's heading: the top bar is behind it.
    await expect(page.locator("#dashboard-title")).to_be_focused()
    await tab_to(page, "#identity-name", key="Shift+Tab")
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


# Each control the keyboard reaches, as its focus ring is drawn: the ring's colour blended over
# the surface behind it (the nearest background that is not transparent), and that surface.
FOCUS_RINGS = """async (presses) => {
  const rgba = (text) => {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const parts = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
  };
  const surface = (element) => {
    for (let e = element.parentElement; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) return c;
    }
    return [255, 255, 255, 1];
  };
  const luminance = ([r, g, b]) => {
    const lin = (v) => ((v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const rings = [];
  for (let i = 0; i < presses; i += 1) {
    await new Promise((done) => setTimeout(done, 0));
    const e = document.activeElement;
    if (!e || e === document.body || rings.some((r) => r.element === e)) continue;
    const style = getComputedStyle(e);
    const behind = surface(e);
    const ring = rgba(style.outlineColor) ?? [0, 0, 0, 0];
    const seen = ring.slice(0, 3).map((v, k) => v * ring[3] + behind[k] * (1 - ring[3]));
    const [hi, lo] = [luminance(seen), luminance(behind)].sort((a, b) => b - a);
    rings.push({
      element: e,
      name: e.tagName + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : ""),
      style: style.outlineStyle,
      width: parseFloat(style.outlineWidth),
      contrast: (hi + 0.05) / (lo + 0.05),
    });
  }
  return rings.map(({ element, ...rest }) => rest);
}"""
MIN_RING_CONTRAST = 3.0  # WCAG 1.4.11, non-text contrast: what shows the focus
MIN_RING_PX = 2


@pytest.mark.parametrize("name", ["admin-sign-in", "tg_auth", "history", "admin"])
async def test_every_control_the_keyboard_reaches_shows_a_focus_ring_one_can_see(
    name: str, server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    page = await visit(tab, server, clients, name)
    rings: list[dict[str, Any]] = []
    for _ in range(40):  # Tab by Tab, each ring read while it is drawn
        await page.keyboard.press("Tab")
        rings += [r for r in await page.evaluate(FOCUS_RINGS, 1) if r["name"] not in {s["name"] for s in rings}]
    assert rings, "the keyboard reaches nothing"
    faint = [
        r
        for r in rings
        if r["style"] != "auto"
        and (r["style"] == "none" or r["width"] < MIN_RING_PX or r["contrast"] < MIN_RING_CONTRAST)
    ]
    assert not faint, faint


async def test_tg_auth_says_when_it_sends_a_lost_redemption_again_and_when_none_came_back(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    """The device link's redemption whose answer the network lost is sent again (7c5cedf): the
    page says so while it waits, and signs in once an answer comes. A browser that gets no answer
    at all is told so in words, with what to do."""
    phone, laptop, offline = [await new_tab(browser, iserver) for _ in range(3)]
    try:
        shown = await guest_with_a_session(phone, "Made on the phone")
        # One redemption lost on the way out, the second held until the page has said it resent.
        sent: list[Route] = []
        resent: asyncio.Future[Route] = asyncio.get_running_loop().create_future()

        async def lose_then_hold(route: Route) -> None:
            sent.append(route)
            if len(sent) == 1:
                await route.abort("connectionreset")
            elif not resent.done():
                resent.set_result(route)
            else:
                await route.continue_()

        await laptop.page.route("**/api/auth/one_time", lose_then_hold)
        first_link = await device_link(shown, iserver)
        page = await laptop.open(first_link)
        await expect(page.locator("#login-status")).to_have_text(
            "No answer from the server yet: sending your sign-in link again."
        )
        await expect(page.locator("#login-heading")).to_have_text("Signing in…")
        await (await resent).continue_()
        await expect(page).to_have_url(re.compile(r"/session(/[0-9a-f-]+)?$"))

        async def never(route: Route) -> None:
            await route.abort("connectionreset")

        await offline.page.route("**/api/auth/one_time", never)
        await shown.locator("#identity-link").click()  # a second link (the panel is open)
        await expect(shown.locator("#identity-link-url")).not_to_have_value(iserver.url + first_link)
        page = await offline.open((await shown.locator("#identity-link-url").input_value()).removeprefix(iserver.url))
        await expect(page.locator("#login-heading")).to_have_text("Signing in failed")
        await expect(page.locator("#login-status")).to_have_text(
            "The server could not be reached, even after trying again. Check the connection, then open the link again."
        )
        assert await offline.stored_token() is None
    finally:
        for tab in (phone, laptop, offline):
            await tab.page.context.close()


@pytest.mark.timeout(120)
async def test_history_delete_all_sent_again_by_keyboard_on_the_narrowest_phone(
    server: ServerUnderTest, browser: Browser
) -> None:
    """/history's Delete all whose answer was lost (549a779), pressed with the keyboard alone
    on a 320 px phone: while it waits to be sent again the page says so in words, fits the
    screen and has no serious axe violation; once answered it says the history was deleted and
    the focus is back on Delete all."""
    await upload(server, 0)
    tab = await new_tab(browser, server, bypass_csp=True)  # only axe's injection needs it lifted
    try:
        await tab.page.set_viewport_size(NARROWEST)
        gate = DeafGate()
        await gate.install(tab.page)
        await tab.use_token(server.token("alice"))
        history = await live(tab, "/history")
        await expect(history.locator("#sessions li.listening-row")).to_have_count(1)
        gate.deaf = True  # the press reaches the server; its answer never comes back
        await tab_to(history, "#clear", presses=60)
        await history.keyboard.press("Enter")
        await tab_to(history, "#clear-yes")
        await history.keyboard.press("Space")
        await expect(history.locator("#clear-status")).to_have_text("Deleting your history…")
        await gate.cut()  # the connection drops: the press waits to be sent again
        status = history.locator("#clear-status")
        await expect(status).to_contain_text(
            "Delete all is being sent again once the connection is back, as the same press", timeout=15_000
        )
        assert await status.get_attribute("role") == "status"
        widths = await history.evaluate("() => [window.innerWidth, document.documentElement.scrollWidth]")
        assert widths[1] <= widths[0], widths
        box = await status.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= NARROWEST["width"], box
        await history.add_script_tag(content=axe_source())
        violations = await history.evaluate(RUN_AXE)
        serious = [v for v in violations if v["impact"] in BLOCKING]
        assert not serious, serious
        gate.deaf = False
        gate.release()
        await expect(status).to_have_text("Your history was deleted.", timeout=15_000)
        await expect(history.locator("#clear")).to_be_focused()
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()


@pytest.mark.parametrize("name", ["admin-sign-in", "admin", "tg_auth", "history"])
async def test_todays_pages_fit_the_narrowest_phone(
    name: str, server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """At 320 px (an older, smaller phone; the suite's phone tests use 390): nothing moves the
    page sideways, and no control reaches past the screen's edge unless it scrolls in a box."""
    await tab.page.set_viewport_size(NARROWEST)
    page = await visit(tab, server, clients, name)
    outside = await page.evaluate(
        """() => {
          const scrolledInside = (e) => {
            for (let up = e.parentElement; up && up !== document.body; up = up.parentElement) {
              if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(up).overflowX)) return true;
            }
            return false;
          };
          return [...document.querySelectorAll("body *")]
            .filter((e) => e.getClientRects().length)
            .filter((e) => { const r = e.getBoundingClientRect(); return r.right > innerWidth + 0.5 || r.left < -0.5; })
            .filter((e) => !scrolledInside(e))
            .map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className)
            .slice(0, 10);
        }"""
    )
    assert not outside, outside
    widths = await page.evaluate("() => [window.innerWidth, document.documentElement.scrollWidth]")
    assert widths[1] <= widths[0], widths
