"""In Chromium: a guest keeps their things past the access token's life; sign out everywhere reaches every device."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from playwright.async_api import Browser, Page, expect

from auth.claims import GUEST_PERMISSIONS
from tests.browser import TOKEN_KEY, Tab, new_tab
from tests.helpers import ServerUnderTest
from tests.identity.support import ACCESS_TTL_S

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


async def in_page(page: Page, path: str, method: str = "GET", body: Any = None) -> Any:
    """Call the API with the page's own identity (web/js/client.js's api)."""
    script = (
        "async ([path, method, body]) =>"
        " (await import('/static/js/client.js')).api(path, body === null ? {method} : {method, body})"
    )
    return await page.evaluate(script, [path, method, body])


async def stored(page: Page) -> dict[str, Any]:
    return json.loads(await page.evaluate(f"localStorage.getItem({json.dumps(TOKEN_KEY)})"))


async def test_a_guest_is_still_the_owner_after_the_access_token_expired_with_no_page_open(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    tab = await new_tab(browser, iserver)
    context = tab.page.context
    try:
        dash = await tab.open("/streams")
        await dash.locator("#title-input").fill("Evening stream")
        await dash.locator("#create-button").click()
        await expect(dash).to_have_url(re.compile(rf"/streams/{UUID}$"))
        stream_id = dash.url.rsplit("/", 1)[1]
        voice = await in_page(dash, "/voicebot/create_session", "POST", {})
        await in_page(dash, "/api/listening/report", "POST", {"item_id": "track-1", "status": "playing", "position_s": 1})
        before = await stored(dash)
        claims = iserver.tokens.verify(before["token"])
        assert claims.guest and claims.fam and before["expires_at"] - time.time() <= ACCESS_TTL_S
        history_key = iserver.services.keys.listening_history(claims.sub)
        assert await iserver.services.redis.get(history_key)
        await dash.close()  # no page open from here on

        # The access token's life passes: the browser keeps only an expired token and its cookie.
        expired, exp = iserver.tokens.mint(
            user_id=claims.sub,
            now_s=time.time() - ACCESS_TTL_S - 3600,
            ttl_s=ACCESS_TTL_S,
            perms=GUEST_PERMISSIONS,
            name=claims.name,
            guest=True,
            fam=claims.fam,
        )
        record = json.dumps({"token": expired, "expires_at": exp, "device": True, "obtained_at": exp - ACCESS_TTL_S})
        await context.add_init_script(
            f"if (JSON.parse(localStorage.getItem({json.dumps(TOKEN_KEY)}) ?? 'null')?.token === {json.dumps(before['token'])})"
            f" localStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(record)});"
        )

        back = Tab(page=await context.new_page(), base_url=iserver.url)
        page = await back.open(f"/streams/{stream_id}")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(page.locator("#page-error")).to_be_hidden()  # not "This is not your stream"
        await expect(page.locator("#identity")).to_have_attribute("data-user-id", claims.sub)
        await expect(page.locator("#identity-lost")).to_have_count(0)  # no prompt
        assert iserver.tokens.verify((await stored(page))["token"]).sub == claims.sub
        mine = await in_page(page, "/api/me/sessions")
        ids = {s["session_id"] if "session_id" in s else s.get("id") for s in mine["sessions"]}
        assert {stream_id, voice["session_id"]} <= ids, mine
        assert await iserver.services.redis.get(history_key)  # still this user's history
        listed = await back.open("/streams")
        await expect(listed.locator("#list-empty")).to_be_hidden()
        assert not back.errors, back.errors + back.console
    finally:
        await context.close()


async def test_a_device_whose_identity_is_gone_says_so_instead_of_becoming_someone_else(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    tab = await new_tab(browser, iserver)
    try:
        page = await tab.open("/streams")
        await in_page(page, "/api/me/sessions")  # the page becomes a guest
        await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
        user_id = await page.locator("#identity").get_attribute("data-user-id")
        await iserver.services.identities.revoke_all(str(user_id))
        await page.evaluate(f"localStorage.setItem({json.dumps(TOKEN_KEY)}, JSON.stringify({{token: 'x.y.z', expires_at: 1, device: true}}))")
        page = await tab.open("/streams")
        await expect(page.locator("#identity-lost")).to_contain_text("signed out")
        assert await iserver.services.redis.keys(iserver.services.keys.user_profile("*")) == [
            iserver.services.keys.user_profile(str(user_id))
        ]  # no new guest was minted behind the person's back
    finally:
        await tab.page.context.close()


async def test_sign_out_everywhere_reaches_the_other_browser(iserver: ServerUnderTest, browser: Browser) -> None:
    first = await new_tab(browser, iserver)
    second = await new_tab(browser, iserver)
    try:
        page = await first.open("/streams")
        await page.locator("#title-input").fill("Shared stream")
        await page.locator("#create-button").click()
        await expect(page).to_have_url(re.compile(rf"/streams/{UUID}$"))
        dashboard = page.url.removeprefix(iserver.url)
        await page.locator("#identity-name").click()
        await page.locator("#identity-link").click()
        url = await page.locator("#identity-link-url").input_value()
        assert url.startswith(f"{iserver.url}/tg_auth?token=")
        await expect(page.locator(".identity-qr svg")).to_be_visible()
        other = await second.open(url.removeprefix(iserver.url))
        await expect(other).to_have_url(re.compile(r"/session$"))
        await expect(other.locator("#identity")).to_have_attribute(
            "data-user-id", str(await page.locator("#identity").get_attribute("data-user-id"))
        )
        watching = await second.open("/streams")
        await expect(watching.locator("#identity")).to_have_attribute("data-state", "known")
        reused = await second.open(url.removeprefix(iserver.url))
        await expect(reused.locator("#login-heading")).to_have_text("This link was already used or has expired")

        watching = await second.open(dashboard)  # the same user: the owner's dashboard, live
        await expect(watching.locator("#connection")).to_have_attribute("data-state", "live")
        await page.reload()
        await page.locator("#identity-name").click()
        await expect(page.locator("#identity-devices li")).to_have_count(2)
        await page.locator("#identity-signout-all").click()
        # The other browser's open socket is told at once, and says so.
        await expect(watching.locator("#identity-lost")).to_contain_text("signed out")
        assert await iserver.services.identities.devices(
            str(await watching.locator("#identity").get_attribute("data-user-id"))
        ) == []
    finally:
        await first.page.context.close()
        await second.page.context.close()
