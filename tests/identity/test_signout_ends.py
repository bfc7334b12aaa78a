"""What a sign-out ends besides devices: the one-time links made before it, and a guest's tokens
bound to no device (audit "authsec", findings 1 and 2).

A device link made by a device, then "sign out everywhere" (or that device signed out): the link
still opened a new 180-day device of the person in another browser. A guest token bound to no
device (a plain ``POST /api/auth/guest``) was not ended by "sign out everywhere": it still read
``/api/auth/me``, renewed itself, opened a device and connected sockets. Real server, real
redis-server, real HTTP and Socket.IO clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import socketio

from auth.claims import Permission
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.identity.support import ACCESS_TTL_S, Browser
from tests.test_protocol_doc import PROTOCOL

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


@pytest_asyncio.fixture
async def clients() -> AsyncIterator[list[Client]]:
    """Socket.IO clients the test appends, closed afterwards (no server of their own)."""
    made: list[Client] = []
    yield made
    for client in made:
        await client.close()


def _token_of(link: dict[str, object]) -> str:
    return str(link["url"]).split("token=", 1)[1].split("&", 1)[0]


async def _device_link(browser: Browser) -> str:
    made = await browser.call("POST", "/api/auth/link")
    assert made.status == 201, made.body
    return _token_of(made.body)


async def _bot_link(server: ServerUnderTest, http: aiohttp.ClientSession, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(server.url + "/voicebot/bot/command", json={"text": "/login"}, headers=headers) as answer:
        body = await answer.json()
        assert answer.status == 200, body
    return _token_of({"url": body["login_url"]})


async def _ended(server: ServerUnderTest, http: aiohttp.ClientSession, token: str) -> None:
    """The link is said ended by a sign-out by the look (an answer), and refused so by the redemption."""
    stranger = Browser(http, server.url)
    looked = await stranger.post("/api/auth/one_time/peek", json={"token": token})
    assert (looked.status, looked.body["usable"], looked.body["reason"]) == (200, False, "signed_out"), looked.body
    assert looked.body["user_id"] == ""  # whose it was is not told once it is ended
    refused = await stranger.post("/api/auth/one_time", json={"token": token, "attempt": "stranger-0001"})
    assert (refused.status, refused.body["error"], refused.body.get("reason")) == (
        401,
        "unauthorized",
        "signed_out",
    ), refused.body
    assert refused.body["link"] == looked.body["link"] in ("device", "bot")
    assert stranger.credential is None and stranger.token == ""


async def test_sign_out_everywhere_ends_the_device_links_and_bot_links_made_before(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    first = Browser(http, iserver.url)
    user_id = (await first.guest()).body["user_id"]
    device_link = await _device_link(first)
    # A chat bot's /login link is made for a user, by no device: an account's token asks for it.
    account = iserver.token("ada", perms=(Permission.READ_OWN, Permission.CREATE, Permission.UPDATE))
    bot_link = await _bot_link(iserver, http, account)
    ada = Browser(http, iserver.url)
    assert (await ada.post("/api/auth/one_time", json={"token": await _bot_link(iserver, http, account)})).status == 200

    out = await first.post("/api/auth/logout_all", json={}, headers={"Authorization": f"Bearer {first.token}"})
    assert out.status == 200 and out.body["revoked"] == 1
    out = await ada.post("/api/auth/logout_all", json={}, headers={"Authorization": f"Bearer {ada.token}"})
    assert out.status == 200 and out.body["revoked"] == 1

    await _ended(iserver, http, device_link)
    await _ended(iserver, http, bot_link)
    assert await iserver.services.identities.devices(user_id) == []
    assert await iserver.services.identities.devices("ada") == []
    # A link asked for after the sign-out works: it ends the links made before it, not the user.
    fresh = Browser(http, iserver.url)
    assert (
        await fresh.post("/api/auth/one_time", json={"token": await _bot_link(iserver, http, account)})
    ).status == 200


async def test_signing_out_the_device_that_made_a_link_ends_it(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    first = Browser(http, iserver.url)
    user_id = (await first.guest()).body["user_id"]
    second = Browser(http, iserver.url)
    assert (await second.post("/api/auth/one_time", json={"token": await _device_link(first)})).status == 200
    made_by_first, made_by_second = await _device_link(first), await _device_link(second)
    first_device = iserver.tokens.verify(first.token).fam

    assert (await second.call("DELETE", f"/api/auth/devices/{first_device}")).status == 200
    await _ended(iserver, http, made_by_first)
    # The other device's link is its own: it still works, once.
    third = Browser(http, iserver.url)
    opened = await third.post("/api/auth/one_time", json={"token": made_by_second})
    assert opened.status == 200 and opened.body["user_id"] == user_id, opened.body

    # Signed out by its own "sign out" (the cookie), its link ends too.
    made_by_third = await _device_link(third)
    assert (await third.post("/api/auth/logout", json={})).body["revoked"] == 1
    await _ended(iserver, http, made_by_third)


async def test_a_link_redeemed_while_its_user_signs_out_everywhere_leaves_no_device(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """Redemptions racing a sign-out everywhere: each either is refused or opened a device that the
    sign-out ended; after both, the person has no device a link opened."""
    first = Browser(http, iserver.url)
    user_id = (await first.guest()).body["user_id"]
    links = [await _device_link(first) for _ in range(8)]
    redeemers = [Browser(http, iserver.url) for _ in links]
    out, *answers = await asyncio.gather(
        first.post("/api/auth/logout_all", json={}, headers={"Authorization": f"Bearer {first.token}"}),
        *(b.post("/api/auth/one_time", json={"token": t}) for b, t in zip(redeemers, links, strict=True)),
    )
    assert out.status == 200
    assert {(a.status, a.body.get("reason")) for a in answers} <= {(200, None), (401, "signed_out")}
    assert await iserver.services.identities.devices(user_id) == []
    for browser, answer in zip(redeemers, answers, strict=True):
        if answer.status == 200:
            assert (await browser.refresh()).body["reason"] == "revoked"
    for token in links:
        refused = await Browser(http, iserver.url).post("/api/auth/one_time", json={"token": token})
        assert refused.status == 401


async def _plain_guest(server: ServerUnderTest, http: aiohttp.ClientSession) -> dict[str, str]:
    """A guest token bound to no device: a plain POST (no JSON, no X-Sessionhub-Client)."""
    async with http.post(server.url + "/api/auth/guest") as answer:
        body = await answer.json()
        assert answer.status == 201 and body["device_id"] == "" and "set-cookie" not in answer.headers, body
    return dict(body)


async def test_sign_out_everywhere_ends_a_guests_tokens_bound_to_no_device(
    iserver: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    bare = await _plain_guest(iserver, http)
    user_id = bare["user_id"]
    socket = Client(iserver.url, bare["token"])
    clients.append(socket)
    await socket.connect()
    gone = asyncio.Event()
    socket.sio.on("disconnect", lambda *_: gone.set())
    # A page from before the cookies moves the token to a device (the token stays valid), and
    # a token renewed from it alone is bound to no device either.
    page = Browser(http, iserver.url)
    moved = await page.post("/api/auth/refresh", json={}, headers={"Authorization": f"Bearer {bare['token']}"})
    assert moved.status == 200 and moved.body["device_id"], moved.body
    renewed = await Browser(http, iserver.url, token=bare["token"]).post(
        "/api/auth/refresh", origin=None, headers={"Authorization": f"Bearer {bare['token']}"}
    )
    assert renewed.status == 200 and renewed.body["device_id"] == "", renewed.body
    operator = Browser(http, iserver.url, token=iserver.token(user_id))  # `sessionhub token` for the same id

    out = await page.post("/api/auth/logout_all", json={}, headers={"Authorization": f"Bearer {page.token}"})
    assert out.status == 200 and out.body["revoked"] == 1

    for token in (bare["token"], renewed.body["token"]):
        held = Browser(http, iserver.url, token=token)
        me = await held.call("GET", "/api/auth/me")
        assert (me.status, me.body["message"]) == (401, "this identity was signed out everywhere"), me.body
        for headers in (
            {"Authorization": f"Bearer {token}"},
            {"Authorization": f"Bearer {token}", "X-Sessionhub-Client": "1"},
        ):
            again = await held.post("/api/auth/refresh", origin=None, headers=headers)
            assert again.status == 401 and held.credential is None, again.body
    await socket.wait_for(lambda: bool(socket.named("signed_out")))
    await asyncio.wait_for(gone.wait(), 5)
    assert socket.named("signed_out")[0]["message"] == "this identity was signed out everywhere"
    refused = Client(iserver.url, bare["token"])
    clients.append(refused)
    said: list[object] = []
    refused.sio.on("connect_error", lambda data: said.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect()
    assert "signed out everywhere" in str(said)
    assert await iserver.services.identities.devices(user_id) == []
    # The operator's token is not a browser's sign-in: it stays.
    assert (await operator.call("GET", "/api/auth/me")).status == 200
    # Another guest's bare token is untouched.
    other = await _plain_guest(iserver, http)
    assert (await Browser(http, iserver.url, token=other["token"]).call("GET", "/api/auth/me")).status == 200


async def test_a_token_that_outlives_sign_out_cannot_flood_the_revocation_log(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """An operator's token (never refused after) called logout_all 3,000 times in 6 s, each call
    a new entry every node reads, kept a day: the log's window filled in 20 s, pushing real
    devices' sign-outs out of it (audit "hostile3", finding 1)."""
    operator = Browser(http, iserver.url, token=iserver.token("operator-bot"))
    limit = iserver.services.limits.signins_per_min
    answers = [
        await operator.post("/api/auth/logout_all", json={}, headers={"Authorization": f"Bearer {operator.token}"})
        for _ in range(limit + 3)
    ]
    assert [a.status for a in answers] == [200] * limit + [429] * 3, [a.status for a in answers]
    assert answers[-1].body["error"] == "rate_limited" and answers[-1].body["retry_after_s"] > 0
    # One entry per user in the set every node holds, however many times it signed out.
    keys = iserver.services.keys
    members = await iserver.services.redis.zrange(keys.revoked_families(), 0, -1)
    assert [m for m in members if "operator-bot" in m] == ["u:operator-bot"], members


async def test_every_node_refuses_the_bare_token_within_the_poll(
    iserver: ServerUnderTest, redis_process: RedisProcess, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    from tests.conftest import start_server

    other = await start_server(
        redis_process.url, tmp_path / "other", guest_token_ttl_s=ACCESS_TTL_S, revocation_poll_s=0.05
    )
    try:
        bare = await _plain_guest(iserver, http)
        socket = Client(other.url, bare["token"])
        await socket.connect()
        try:
            held = Browser(http, other.url, token=bare["token"])
            assert (await held.call("GET", "/api/auth/me")).status == 200
            page = Browser(http, iserver.url)
            await page.post("/api/auth/refresh", json={}, headers={"Authorization": f"Bearer {bare['token']}"})
            out = await page.post("/api/auth/logout_all", json={}, headers={"Authorization": f"Bearer {page.token}"})
            assert out.status == 200
            await socket.wait_for(lambda: bool(socket.named("signed_out")), timeout=5)
            assert (await held.call("GET", "/api/auth/me")).status == 401
        finally:
            await socket.sio.disconnect()
    finally:
        await other.stop()


def test_protocol_says_what_a_sign_out_ends() -> None:
    doc = " ".join(PROTOCOL.read_text(encoding="utf-8").split())
    assert '`reason: "signed_out"`' in doc
    assert "every guest token of the user bound to no device" in doc
    assert "`sessionhub token`" in doc
