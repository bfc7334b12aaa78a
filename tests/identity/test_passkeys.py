"""Passkeys in Chromium (CDP virtual authenticator), and the refusals around them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, CDPSession, Page, expect
from redis.asyncio import Redis

from auth.relying_party import RelyingParty
from tests.browser import lose_answers, new_tab
from tests.helpers import RedisProcess, ServerUnderTest, free_port, to_window_start
from tests.identity.support import Browser as Caller
from tests.identity.test_web import in_page


@pytest_asyncio.fixture
async def pserver(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose public URL is http://localhost:<port> (a relying party browsers accept)."""
    from tests.conftest import start_server

    port = free_port()
    url = f"http://localhost:{port}"
    srv = await start_server(redis_process.url, tmp_path, listen_port=port, public_url=url, revocation_poll_s=0.05)
    srv.url = url
    yield srv
    await srv.stop()


async def authenticator(page: Page) -> tuple[CDPSession, str]:
    """A virtual platform authenticator (resident keys, user verification) for this page's context."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp, added["authenticatorId"]


async def test_a_passkey_added_in_one_browser_signs_another_in_as_the_same_user(
    pserver: ServerUnderTest, browser: Browser
) -> None:
    first = await new_tab(browser, pserver)
    second = await new_tab(browser, pserver)
    try:
        cdp, first_authenticator = await authenticator(first.page)
        page = await first.open("/streams")
        await page.locator("#title-input").fill("Passkey stream")
        await page.locator("#create-button").click()
        await page.wait_for_url("**/streams/*")
        stream_id = page.url.rsplit("/", 1)[1]
        # The dashboard learns who it is from its own request: read the id once it is shown.
        await expect(page.locator("#identity")).to_have_attribute("data-user-id", re.compile(r"^guest-"))
        user_id = await page.locator("#identity").get_attribute("data-user-id")
        assert user_id and user_id.startswith("guest-")
        await page.locator("#identity-name").click()
        await page.locator("#identity-add-passkey").click()
        await expect(page.locator("#identity-passkey-status")).to_contain_text("Passkey added")
        await expect(page.locator("#identity-passkeys li")).to_have_count(1)
        # Named as the devices are, not by the raw User-Agent that added it ("Mozilla/5.0 (X11; ...").
        await expect(page.locator("#identity-passkeys li")).to_contain_text(re.compile(r"^[^/]+ on Linux · added"))
        profile = await pserver.services.identities.profile(user_id)
        assert profile.saved and await pserver.services.redis.ttl(pserver.services.keys.user_profile(user_id)) == -1

        # The same passkey, on another device (as a synced passkey would be).
        credentials = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": first_authenticator}))[
            "credentials"
        ]
        assert len(credentials) == 1
        cdp2, second_authenticator = await authenticator(second.page)
        await cdp2.send(
            "WebAuthn.addCredential", {"authenticatorId": second_authenticator, "credential": credentials[0]}
        )
        other = await second.open("/")
        await expect(other.locator("#identity")).to_have_attribute("data-state", "none")
        # A sign-in reloads the page: read the reloaded one (the page going away may show the
        # person for a moment, and a call made in it dies with it).
        async with other.expect_navigation(wait_until="load"):
            await other.locator("#identity-passkey-signin").click()
        await expect(other.locator("#identity")).to_have_attribute("data-user-id", user_id)
        mine = await in_page(other, "/api/me/sessions")
        assert stream_id in str(mine)
        dash = await second.open(f"/streams/{stream_id}")
        await expect(dash.locator("#connection")).to_have_attribute("data-state", "live")  # the owner's dashboard

        # Remove it: it signs nobody in any more.
        page = await first.open("/streams")
        await page.locator("#identity-name").click()
        # By keyboard: the focus is not dropped to the page with the row (it goes to Add).
        await page.locator("#identity-passkeys li button").focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#identity-passkeys li")).to_have_count(0)
        await expect(page.locator("#identity-add-passkey")).to_be_focused()
        third = await new_tab(browser, pserver)
        try:
            cdp3, third_authenticator = await authenticator(third.page)
            await cdp3.send(
                "WebAuthn.addCredential", {"authenticatorId": third_authenticator, "credential": credentials[0]}
            )
            again = await third.open("/")
            await again.locator("#identity-passkey-signin").click()
            await expect(again.locator("#identity [role=alert]")).to_contain_text("not known here")
        finally:
            await third.page.context.close()
        assert not first.errors and not second.errors, first.errors + second.errors
    finally:
        await first.page.context.close()
        await second.page.context.close()


async def test_a_guest_that_saved_a_passkey_is_still_signed_in_on_its_laptop_41_days_later(
    pserver: ServerUnderTest, browser: Browser
) -> None:
    """Saving a passkey keeps a guest for good (README): the laptop it was saved on was signed
    out 30 days later (its device kept the guest's time), told its things had been deleted (they
    had not), and the panel went on saying "deleted with your guest identity. Add a passkey…"."""
    laptop = await new_tab(browser, pserver)
    try:
        await authenticator(laptop.page)
        page = await laptop.open("/streams")
        await in_page(page, "/api/me/sessions")  # the page becomes a guest
        await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
        user_id = await page.locator("#identity").get_attribute("data-user-id")
        await page.locator("#identity-name").click()
        await expect(page.locator("#identity-retention")).to_contain_text("Add a passkey to keep it for good")
        await page.locator("#identity-add-passkey").click()
        await expect(page.locator("#identity-passkey-status")).to_contain_text("Passkey added")
        await expect(page.locator("#identity-retention")).to_have_count(0)
        kept = json.loads(await page.evaluate("localStorage.getItem('sessionhub.identity')") or "null")
        assert kept is not None and kept.get("kept_for_s", "absent") is None, kept

        pserver.services.clock.shift_ms += 41 * 86_400_000
        page = await laptop.open("/")
        await expect(page.locator("#identity")).to_have_attribute("data-user-id", user_id or "?")
        await expect(page.locator("#identity-lost")).to_have_count(0)

        # The laptop unused past the refresh lifetime (180 days): its sign-in has expired, but
        # nothing was deleted, and the passkey brings the identity back.
        pserver.services.clock.shift_ms += 181 * 86_400_000
        page = await laptop.open("/")
        lost = page.locator("#identity-lost")
        await expect(lost).to_contain_text("Your sign-in here has expired.")
        await expect(lost).to_contain_text("stay with the old identity")
        await expect(lost).not_to_contain_text("deleted")
        assert not laptop.errors, laptop.errors
    finally:
        await laptop.page.context.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def test_challenges_are_single_use_and_ceremonies_refuse_garbage(
    pserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    to_window_start(pserver.services.clock)  # its last requests count up to the sign-in limit
    page = Caller(http, pserver.url)
    await page.guest()
    started = await page.call("POST", "/api/auth/passkeys/register/options")
    assert started.status == 200 and started.body["options"]["rp"]["id"] == "localhost"
    challenge_id = started.body["challenge_id"]
    bogus: dict[str, Any] = {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}
    answer = await page.call(
        "POST", "/api/auth/passkeys/register", json={"challenge_id": challenge_id, "credential": bogus}
    )
    assert (answer.status, answer.body["error"]) == (400, "invalid_payload")
    again = await page.call(
        "POST", "/api/auth/passkeys/register", json={"challenge_id": challenge_id, "credential": bogus}
    )
    assert (again.status, again.body["reason"]) == (401, "challenge")  # used once already
    login = await page.post("/api/auth/passkeys/login/options", json={})
    assert login.status == 200
    wrong_purpose = await page.call(
        "POST", "/api/auth/passkeys/register", json={"challenge_id": login.body["challenge_id"], "credential": bogus}
    )
    assert wrong_purpose.status == 401
    huge = {"challenge_id": "x" * 32, "credential": {"id": "A" * 20_000}}
    assert (await page.call("POST", "/api/auth/passkeys/register", json=huge)).status == 413
    typed = await page.call("POST", "/api/auth/passkeys/register", json={"challenge_id": 5, "credential": []})
    assert (typed.status, typed.body["error"]) == (400, "invalid_payload")
    cross = await page.post("/api/auth/passkeys/login/options", json={}, origin="https://evil.example")
    assert cross.status == 403
    unknown = await page.post("/api/auth/passkeys/login", json={"challenge_id": "x" * 32, "credential": bogus})
    assert (unknown.status, unknown.body["reason"]) == (401, "challenge")
    statuses = [
        (await page.post("/api/auth/passkeys/login/options", json={})).status
        for _ in range(pserver.services.limits.signins_per_min)
    ]
    assert statuses[-1] == 429


@pytest.mark.parametrize(
    ("url", "works"),
    [
        ("https://hub.example.org", True),
        ("https://hub.example.org:8443/app", True),
        ("http://localhost:8080", True),
        ("http://hub.example.org", False),
        ("https://10.0.0.5", False),
        ("http://127.0.0.1:8080", False),
        ("hub.example.org", False),
    ],
)
def test_the_relying_party_comes_from_the_public_url_or_start_is_refused(url: str, works: bool) -> None:
    if works:
        party = RelyingParty.from_public_url(url)
        assert party.rp_id in url and url.startswith(party.origin)
    else:
        with pytest.raises(ValueError, match="SESSIONHUB_PASSKEYS=false"):
            RelyingParty.from_public_url(url)


async def test_without_a_public_url_passkeys_say_they_are_off(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    page = Caller(http, iserver.url)
    await page.guest()
    listed = await page.call("GET", "/api/auth/passkeys")
    assert listed.status == 200 and listed.body == {"enabled": False, "passkeys": []}
    refused = await page.call("POST", "/api/auth/passkeys/register/options")
    assert (refused.status, refused.body["reason"]) == (403, "off")


async def test_a_public_url_unfit_for_passkeys_refuses_to_start(redis_process: RedisProcess, tmp_path: Path) -> None:
    from tests.conftest import start_server

    with pytest.raises(ValueError, match="passkeys need https"):
        await start_server(redis_process.url, tmp_path, public_url="http://hub.example.org")
    srv = await start_server(redis_process.url, tmp_path, public_url="http://hub.example.org", passkeys=False)
    await srv.stop()


async def test_a_passkeys_own_label_is_plain_text(pserver: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    """As a name (a passkey's label is listed beside the devices')."""
    first = Caller(http, pserver.url)
    await first.guest()
    for label in ("Laptop \u202egnp.exe", "two\nlines"):
        refused = await first.call(
            "POST", "/api/auth/passkeys/register", json={"challenge_id": "c" * 16, "credential": {}, "label": label}
        )
        assert (refused.status, refused.body["error"]) == (400, "invalid_payload"), refused.body
        assert "label" in refused.body["message"]


async def test_a_passkey_remove_whose_answer_was_lost_is_not_said_to_have_failed(
    pserver: ServerUnderTest, browser: Browser
) -> None:
    """Removed, its answer lost: the page said "The passkey was not removed", its row stayed,
    and Remove again said "no such passkey of yours" (audit lostcreates)."""
    tab = await new_tab(browser, pserver)
    try:
        await authenticator(tab.page)
        page = await tab.open("/streams")
        await page.locator("#title-input").fill("Mine")
        await page.locator("#create-button").click()  # a guest identity, made by the page
        await page.wait_for_url("**/streams/*")
        await page.locator("#identity-name").click()
        await page.locator("#identity-add-passkey").click()
        await expect(page.locator("#identity-passkeys li")).to_have_count(1)
        seen = await lose_answers(page, "**/api/auth/passkeys/*", method="DELETE")
        await page.locator("#identity-passkeys li button").click()
        await expect(page.locator("#identity-error")).to_have_text(
            "No answer from the server, so the passkey may have been removed: the list shows it once the connection is back."
        )
        await expect(page.locator("#identity-passkeys li")).to_have_count(0)  # read again: it was
        assert len(seen.keys) == 1
    finally:
        await tab.page.context.close()
