"""In Chromium: a guest keeps their things past the access token's life; sign out everywhere reaches every device."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis

from tests.browser import TOKEN_KEY, Tab, accept_dialogs, new_tab
from tests.helpers import RedisProcess, ServerUnderTest

# Each test here is a journey across several pages and two browsers: pytest's 60 s hang guard
# was reached once by one that passes in ~10 s, on a machine running three suites at once.
pytestmark = pytest.mark.timeout(180)

# What a browser journey here may take before it fails with the step it waited on (pytest's guard
# above names none): several times what one takes on a busy machine.
JOURNEY_BOUND_S = 120
# The access tokens' life in the absence test: short, so that the test lets it pass for real.
SHORT_TTL_S = 2
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


@pytest_asyncio.fixture
async def short_lived(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose access tokens live SHORT_TTL_S (``SESSIONHUB_GUEST_TOKEN_TTL_S``), on the real clock."""
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, guest_token_ttl_s=SHORT_TTL_S, revocation_poll_s=0.05)
    yield srv
    await srv.stop()


async def stored_after_close(context: BrowserContext, origin: str) -> dict[str, Any]:
    """The token record a closed page left in the context's localStorage (read with no page open)."""
    state = await context.storage_state()
    for entry in state["origins"]:
        if entry["origin"] == origin:
            for item in entry["localStorage"]:
                if item["name"] == TOKEN_KEY:
                    return dict(json.loads(item["value"]))
    raise AssertionError(f"no token record for {origin}: {state}")


async def until_expired(server: ServerUnderTest, token: str, timeout_s: float) -> None:
    """Wait, with no page open, until the server's clock is past ``token``'s expiry."""
    exp = int(jwt.decode(token, options={"verify_signature": False})["exp"])  # read, not trusted
    deadline = time.monotonic() + timeout_s
    while server.services.clock.now_s() <= exp:
        assert time.monotonic() < deadline, f"the server's clock did not pass exp {exp}"
        await asyncio.sleep(0.05)


async def test_a_guest_is_still_the_owner_after_the_access_token_expired_with_no_page_open(
    short_lived: ServerUnderTest, browser: Browser
) -> None:
    server = short_lived
    tab = await new_tab(browser, server)
    context = tab.page.context
    try:
        dash = await tab.open("/streams")
        await dash.locator("#title-input").fill("Evening stream")
        await dash.locator("#create-button").click()
        await expect(dash).to_have_url(re.compile(rf"/streams/{UUID}$"))
        stream_id = dash.url.rsplit("/", 1)[1]
        voice = await in_page(dash, "/voicebot/create_session", "POST", {})
        await in_page(
            dash, "/api/listening/report", "POST", {"item_id": "track-1", "status": "playing", "position_s": 1}
        )
        user_id = server.tokens.verify((await stored(dash))["token"]).sub
        history_key = server.services.keys.listening_history(user_id)
        assert user_id.startswith("guest-") and await server.services.redis.get(history_key)
        await dash.close()  # no page open from here on

        # Time passes with no page open: the last access token the browser holds runs out.
        left = await stored_after_close(context, server.url)
        assert left["device"] is True and left["expires_at"] - left["obtained_at"] <= SHORT_TTL_S + 1
        await until_expired(server, left["token"], timeout_s=SHORT_TTL_S + 10)
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {left['token']}"}
            async with http.get(f"{server.url}/api/me/sessions", headers=headers) as refused:
                assert refused.status == 401  # what the browser holds is worth nothing now

        back = Tab(page=await context.new_page(), base_url=server.url)
        page = await back.open(f"/streams/{stream_id}")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(page.locator("#page-error")).to_be_hidden()  # not "This is not your stream"
        await expect(page.locator("#identity")).to_have_attribute("data-user-id", user_id)
        await expect(page.locator("#identity-lost")).to_have_count(0)  # no prompt
        renewed = await stored(page)
        assert renewed["token"] != left["token"] and server.tokens.verify(renewed["token"]).sub == user_id
        mine = await in_page(page, "/api/me/sessions")
        ids = {s["session_id"] if "session_id" in s else s.get("id") for s in mine["sessions"]}
        assert {stream_id, voice["session_id"]} <= ids, mine
        history = await in_page(page, "/api/listening")
        assert "track-1" in json.dumps(history), history  # still this user's history, read as them
        listed = await back.open("/streams")
        await expect(listed.locator("#list-empty")).to_be_hidden()
        await expect(listed.locator("#identity")).to_have_attribute("data-user-id", user_id)
        assert not back.errors, back.errors + back.console
    finally:
        await context.close()


async def guest_on_streams(tab: Tab) -> tuple[Page, str]:
    """/streams open in ``tab``, whose page became a guest: the page and the guest's user id."""
    page = await tab.open("/streams")
    await in_page(page, "/api/me/sessions")  # the page becomes a guest
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    return page, str(await page.locator("#identity").get_attribute("data-user-id"))


async def test_a_device_whose_identity_is_gone_says_so_instead_of_becoming_someone_else(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    tab = await new_tab(browser, iserver)
    try:
        page, user_id = await guest_on_streams(tab)
        await iserver.services.identities.revoke_all(str(user_id))
        await page.evaluate(
            f"localStorage.setItem({json.dumps(TOKEN_KEY)}, JSON.stringify({{token: 'x.y.z', expires_at: 1, device: true}}))"
        )
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
    # Twice (s32-a2, s32-c3, two suites side by side) this journey of ~15 s outlived pytest's
    # 180 s guard, whose report names no line. Well inside it, this bound fails with the
    # traceback of the step that waited.
    try:
        async with asyncio.timeout(JOURNEY_BOUND_S):
            await sign_out_everywhere_journey(iserver, first, second)
    finally:
        async with asyncio.timeout(JOURNEY_BOUND_S / 4):  # a close that hangs names itself too
            await first.page.context.close()
            await second.page.context.close()


async def sign_out_everywhere_journey(iserver: ServerUnderTest, first: Tab, second: Tab) -> None:
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
    await expect(other).to_have_url(iserver.url + dashboard)  # the page the link was made on
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
    user_id = str(await page.locator("#identity").get_attribute("data-user-id"))
    # Signing out reloads this page. Wait for the reloaded page, as the person does: a context
    # closed while its page was still reloading hung Chromium's close (CI, s43), and a page that
    # still showed the person after the reload would be a bug of its own.
    accept_dialogs(page)
    async with page.expect_navigation(wait_until="load"):
        await page.locator("#identity-signout-all").click()
    # Nobody, or (once the stream page's socket asked for one) a new guest: never the person.
    await expect(page.locator("#identity")).to_have_attribute("data-state", re.compile(r"^(none|known)$"))
    await expect(page.locator("#identity")).not_to_have_attribute("data-user-id", user_id)
    # The other browser's open socket is told at once, and says so.
    await expect(watching.locator("#identity-lost")).to_contain_text("signed out")
    assert (
        await iserver.services.identities.devices(
            str(await watching.locator("#identity").get_attribute("data-user-id"))
        )
        == []
    )


async def test_escape_closes_the_identity_panel_and_gives_focus_back_to_the_name(
    server: ServerUnderTest, tab: Tab
) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    name = page.locator("#identity-name")
    for focused_in_panel in ("#identity-name-input", "#identity-signout"):
        await name.focus()
        await page.keyboard.press("Enter")
        await expect(name).to_have_attribute("aria-expanded", "true")
        await page.locator(focused_in_panel).focus()
        await page.keyboard.press("Escape")
        await expect(page.locator("#identity-panel")).to_have_count(0)
        await expect(name).to_have_attribute("aria-expanded", "false")
        await expect(name).to_be_focused()
    await page.keyboard.press("Enter")  # focus on the name itself: Escape closes it too
    await expect(page.locator("#identity-panel")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.locator("#identity-panel")).to_have_count(0)
    await expect(name).to_be_focused()


async def test_the_identity_panel_closes_when_focus_moves_on_past_it(server: ServerUnderTest, tab: Tab) -> None:
    """Tabbed past its last control, the panel stayed open over the page, hiding the field the
    keyboard had reached (on a phone's width it covers most of the page), and Escape from there
    did nothing."""
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    name = page.locator("#identity-name")
    await name.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#identity-panel")).to_be_visible()
    await page.locator("#identity-panel button").last.focus()
    await page.keyboard.press("Tab")  # on to the page
    await expect(page.locator("#identity-panel")).to_have_count(0)
    await expect(name).to_have_attribute("aria-expanded", "false")
    focused = await page.evaluate("document.activeElement.id")
    assert focused and focused != "identity-name", focused
    # Opened again and left open by a click on the page: Escape from there closes it, focus stays.
    await name.click()
    await expect(page.locator("#identity-panel")).to_be_visible()
    await page.evaluate("document.activeElement.blur()")
    await page.keyboard.press("Escape")
    await expect(page.locator("#identity-panel")).to_have_count(0)


async def test_the_identity_panel_says_so_when_the_server_cannot_be_reached(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    name = page.locator("#identity-name")
    await expect(name).to_be_visible()
    shown_name = await name.text_content()
    await name.click()
    error = page.locator("#identity-panel #identity-error[role=alert]")
    await expect(error).to_be_hidden()

    await page.context.set_offline(True)
    await page.locator("#identity-name-input").fill("New Name")
    save = page.locator("#identity-panel button", has_text="Save name")
    await save.click()
    await expect(error).to_have_text("The name was not saved: The server cannot be reached.")
    await expect(save).to_be_enabled()
    await expect(name).to_have_text(str(shown_name))
    await page.locator("#identity-signout-all").click()
    await expect(error).to_have_text("You are still signed in: The server cannot be reached.")
    await expect(page.locator("#identity-signout-all")).to_be_enabled()
    assert await tab.stored_token() is not None

    await page.context.set_offline(False)  # the same controls work once the server is back
    await save.click()
    await expect(name).to_have_text("New Name")
    # The tab fixture fails the test on any uncaught error (an unhandled rejection included).


async def test_a_page_whose_token_ran_out_asks_who_this_is_once(iserver: ServerUnderTest, browser: Browser) -> None:
    """A page opened with its access token run out renewed it for its first reading of who this
    is; the renewal's news (a page became someone) then made it ask again: two `/api/auth/me` on
    every such load, one more round trip on a slow network."""
    tab = await new_tab(browser, iserver)
    try:
        page, user_id = await guest_on_streams(tab)
        record = await tab.stored_token()
        assert record is not None
        await page.evaluate(
            f"localStorage.setItem({json.dumps(TOKEN_KEY)}, JSON.stringify({json.dumps({**record, 'expires_at': 1})}))"
        )
        asked: list[str] = []
        page.on("request", lambda request: request.url.endswith("/api/auth/me") and asked.append(request.method))
        page = await tab.open("/streams")
        await expect(page.locator("#identity")).to_have_attribute("data-user-id", str(user_id))
        await expect(page.locator("#list-empty")).to_be_visible()  # the page's own reading is done too
        assert asked == ["GET"], asked
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()
