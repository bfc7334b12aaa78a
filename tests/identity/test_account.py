"""Who am I: the profile, devices, sign out (everywhere), and links that sign another device in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import pytest_asyncio
import socketio

from tests.helpers import Client, ServerUnderTest, to_window_start
from tests.identity.support import Browser


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def _linked_pair(server: ServerUnderTest, http: aiohttp.ClientSession) -> tuple[Browser, Browser]:
    """A guest's first device, and a second one signed in with a device link."""
    first = Browser(http, server.url)
    await first.guest()
    link = await first.call("POST", "/api/auth/link")
    assert link.status == 201, link.body
    second = Browser(http, server.url)
    answer = await second.post("/api/auth/one_time", json={"token": link.body["url"].split("token=", 1)[1]})
    assert answer.status == 200 and answer.cookie, answer.body
    return first, second


async def test_a_device_link_signs_another_device_in_as_the_same_user_once(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    first = Browser(http, iserver.url)
    user_id = (await first.guest()).body["user_id"]
    link = await first.call("POST", "/api/auth/link")
    assert link.status == 201 and link.body["url"].startswith(f"{iserver.url}/tg_auth?token=")  # absolute
    assert link.body["qr_svg"].lstrip().startswith("<svg") and 0 < link.body["expires_in_s"] <= 600
    token = link.body["url"].split("token=", 1)[1]
    second = Browser(http, iserver.url)
    answer = await second.post("/api/auth/one_time", json={"token": token})
    assert answer.status == 200 and answer.body["user_id"] == user_id
    claims = iserver.tokens.verify(second.token)
    assert claims.sub == user_id and claims.fam and claims.fam != iserver.tokens.verify(first.token).fam
    assert (await second.refresh()).body["user_id"] == user_id  # a device of its own, lasting
    again = await Browser(http, iserver.url).post("/api/auth/one_time", json={"token": token})
    assert (again.status, again.body["reason"]) == (401, "used")


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:10], lambda t: t + "x" * 200, lambda t: ""], ids=["cut", "padded", "empty"]
)
async def test_a_link_cut_short_or_padded_is_an_unknown_link(
    iserver: ServerUnderTest, http: aiohttp.ClientSession, mangle: Callable[[str], str]
) -> None:
    """PROTOCOL.md: an unknown token is 401 with reason "used" (the page then says the link was
    used or has expired), whatever its length; and it leaves the real link usable."""
    first = Browser(http, iserver.url)
    await first.guest()
    token = (await first.call("POST", "/api/auth/link")).body["url"].split("token=", 1)[1]
    refused = await Browser(http, iserver.url).post("/api/auth/one_time", json={"token": mangle(token)})
    assert (refused.status, refused.body["error"], refused.body["reason"]) == (401, "unauthorized", "used")
    assert (await Browser(http, iserver.url).post("/api/auth/one_time", json={"token": token})).status == 200


async def test_me_lists_the_devices_and_takes_a_display_name(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    first, second = await _linked_pair(iserver, http)
    me = await first.call("GET", "/api/auth/me")
    assert me.status == 200 and me.body["name"] == "Guest" and me.body["guest"] is True
    assert len(me.body["devices"]) == 2 and [d["current"] for d in me.body["devices"]].count(True) == 1
    renamed = await second.call("PATCH", "/api/auth/me", json={"name": "Ada"})
    assert renamed.status == 200 and renamed.body["name"] == "Ada"
    await first.refresh()
    assert iserver.tokens.verify(first.token).name == "Ada"  # carried from the next refresh on
    bad = await first.call("PATCH", "/api/auth/me", json={"name": "x\n" * 100})
    assert bad.status == 400 and bad.body["error"] == "invalid_payload"


@pytest.mark.parametrize("name", ["a\x85b", "a\u202eb", "a\u2028b", "a\x9bb"])
async def test_a_display_name_with_a_control_or_reordering_character_is_refused(
    iserver: ServerUnderTest, http: aiohttp.ClientSession, name: str
) -> None:
    """C1 controls (U+0080-009F) are control characters too, and a bidi override would disguise
    the name where the streamer's review and exports show it: the plain-text rule of every name."""
    browser = Browser(http, iserver.url)
    await browser.guest()
    assert (await browser.call("PATCH", "/api/auth/me", json={"name": "Ada"})).status == 200
    refused = await browser.call("PATCH", "/api/auth/me", json={"name": name})
    assert (refused.status, refused.body["error"]) == (400, "invalid_payload")
    assert (await browser.call("GET", "/api/auth/me")).body["name"] == "Ada"


async def test_revoking_a_device_refuses_its_tokens_and_its_cookie(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    first, second = await _linked_pair(iserver, http)
    second_device = iserver.tokens.verify(second.token).fam
    revoked = await first.call("DELETE", f"/api/auth/devices/{second_device}")
    assert revoked.status == 200
    assert (await second.call("GET", "/api/auth/me")).status == 401
    assert (await second.refresh()).body["reason"] == "revoked"
    stranger = Browser(http, iserver.url)
    await stranger.guest()
    not_mine = await stranger.call("DELETE", f"/api/auth/devices/{iserver.tokens.verify(first.token).fam}")
    assert (not_mine.status, not_mine.body["error"]) == (404, "not_found")  # another user's device
    assert (await first.call("DELETE", "/api/auth/devices/..%2Fx")).status == 404
    me = await first.call("GET", "/api/auth/me")
    assert [d["device_id"] for d in me.body["devices"]] == [iserver.tokens.verify(first.token).fam]


async def test_sign_out_everywhere_tells_and_drops_every_socket(
    iserver: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    first, second = await _linked_pair(iserver, http)
    socket = Client(iserver.url, second.token)
    clients.append(socket)
    await socket.connect()
    gone = asyncio.Event()
    socket.sio.on("disconnect", lambda *_: gone.set())
    answer = await first.post("/api/auth/logout_all", json={}, headers={"Authorization": f"Bearer {first.token}"})
    assert answer.status == 200 and answer.body["revoked"] == 2
    await socket.wait_for(lambda: bool(socket.named("signed_out")))
    await asyncio.wait_for(gone.wait(), 5)
    assert socket.named("signed_out")[0]["error"] == "unauthorized"
    for device in (first, second):
        assert (await device.call("GET", "/api/auth/me")).status == 401
        assert (await device.refresh()).body["reason"] == "revoked"
    refused = Client(iserver.url, second.token)
    clients.append(refused)
    said: list[object] = []
    refused.sio.on("connect_error", lambda data: said.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect()
    assert "this device was signed out" in str(said)


async def test_sign_out_forgets_this_device_only(iserver: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    first, second = await _linked_pair(iserver, http)
    # An expired (here: garbage) access token does not stop a sign-out: the cookie decides.
    answer = await second.post("/api/auth/logout", json={}, headers={"Authorization": "Bearer expired.token.x"})
    assert answer.status == 200 and answer.body["revoked"] == 1
    assert (await second.refresh()).body["reason"] == "revoked"
    assert (await first.refresh()).status == 200
    cross = await first.post("/api/auth/logout", json={}, origin="https://evil.example")
    assert cross.status == 403 and (await first.refresh()).status == 200


@pytest.mark.parametrize("cookie", ["garbage", "0123456789abcdef0123456789abcdef.x", "other-person"])
async def test_sign_out_with_a_stale_cookie_signs_the_bearers_device_out(
    iserver: ServerUnderTest, http: aiohttp.ClientSession, cookie: str
) -> None:
    """A cookie that names no device of the bearer's person (corrupt, its device gone, or another
    person's) does not turn "sign this device out" into nothing: the bearer's device is signed
    out, and the cookie's own family, if any, is left alone."""
    first, second = await _linked_pair(iserver, http)
    stranger = Browser(http, iserver.url)
    await stranger.guest()
    second.credential = stranger.credential if cookie == "other-person" else cookie
    answer = await second.post("/api/auth/logout", json={}, headers={"Authorization": f"Bearer {second.token}"})
    assert answer.status == 200 and answer.body["revoked"] == 1, answer.body
    assert (await second.call("GET", "/api/auth/me")).status == 401
    assert (await first.refresh()).status == 200  # the person's other device stays
    assert (await stranger.refresh()).status == 200  # a cookie of someone else's is not theirs to end


async def test_device_links_are_rate_limited_and_need_a_device(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    to_window_start(iserver.services.clock)
    operator = Browser(http, iserver.url, token=iserver.token("ops"))
    assert (await operator.call("POST", "/api/auth/link")).status == 403  # a bare token has no device
    first = Browser(http, iserver.url)
    await first.guest()
    limit = iserver.services.limits.signins_per_min
    statuses = [(await first.call("POST", "/api/auth/link")).status for _ in range(limit + 1)]
    assert statuses[-1] == 429 and statuses[:-1] == [201] * limit


async def test_ones_own_device_link_opened_in_the_same_browser_replaces_its_device(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """The new device's cookie replaced the browser's: its old device stayed listed beside the new
    one for the cookie's lifetime, held by no browser, looking like a second "Chrome on Linux".
    A browser of someone else opening the link keeps its own identity's devices untouched."""
    browser = Browser(http, iserver.url)
    await browser.guest()
    old_token, old_cookie = browser.token, browser.credential
    link = await browser.call("POST", "/api/auth/link")
    answer = await browser.post("/api/auth/one_time", json={"token": link.body["url"].split("token=", 1)[1]})
    assert answer.status == 200 and answer.cookie and answer.cookie != old_cookie, answer.body
    devices = (await browser.call("GET", "/api/auth/me")).body["devices"]
    assert [device["current"] for device in devices] == [True], devices
    gone = await Browser(http, iserver.url, credential=old_cookie).refresh()
    assert (gone.status, gone.body["error"]) == (401, "unauthorized"), gone.body
    assert (await Browser(http, iserver.url, token=old_token).call("GET", "/api/auth/me")).status == 401

    someone = Browser(http, iserver.url)
    await someone.guest()
    someones_cookie = someone.credential
    other_link = await browser.call("POST", "/api/auth/link")
    opened = await someone.post("/api/auth/one_time", json={"token": other_link.body["url"].split("token=", 1)[1]})
    assert opened.status == 200, opened.body
    assert len((await browser.call("GET", "/api/auth/me")).body["devices"]) == 2
    kept = await Browser(http, iserver.url, credential=someones_cookie).refresh()  # its own guest's device
    assert kept.status == 200, kept.body
