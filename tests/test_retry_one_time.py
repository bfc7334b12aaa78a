"""A device link redeemed whose answer was lost: the same page sending it again signs in.

The page at /tg_auth POSTs the link's token; the server uses the link up and opens a device, but
the answer (with the device's cookie) never reaches the browser (the connection dropped). Sent
again, the redemption was ``401 used``: the browser had no identity and the person had to make a
new link on the other device. Now the page sends an ``attempt`` id (one per visit) with the
token: the same attempt within a minute is that redemption: the browser gets the device the lost
answer carried, with the same cookie (one device, however many are sent at once), while the
token alone, or another attempt, is still refused ``used``. Real server, real redis-server, raw
TCP for the cut.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest_asyncio
from collections.abc import AsyncIterator

from tests.helpers import ServerUnderTest
from tests.identity.support import Browser
from tests.raw_wire import port_of
from tests.test_protocol_doc import PROTOCOL


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def _link(server: ServerUnderTest, http: aiohttp.ClientSession) -> tuple[Browser, str]:
    first = Browser(http, server.url)
    await first.guest()
    link = await first.call("POST", "/api/auth/link")
    assert link.status == 201, link.body
    return first, str(link.body["url"].split("token=", 1)[1])


async def _redeem_unanswered(server: ServerUnderTest, body: dict[str, Any], user_id: str) -> list[str]:
    """POST the redemption as the page does, wait until the server opened its device, and drop
    the connection without reading the answer; the device opened."""
    before = await _devices(server, user_id)
    raw = json.dumps(body).encode()
    head = (
        f"POST /api/auth/one_time HTTP/1.1\r\nHost: 127.0.0.1:{port_of(server.url)}\r\nOrigin: {server.url}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
    try:
        writer.write(head + raw)
        await writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (now := await _devices(server, user_id)) == before:
            assert loop.time() < deadline, "the first redemption never ran"
            await asyncio.sleep(0.02)  # a predicate on Redis, polled
    finally:
        writer.close()
    return sorted(set(now) - set(before))


async def _devices(server: ServerUnderTest, user_id: str) -> list[str]:
    families = await server.services.redis.zrange(server.services.keys.user_families(user_id), 0, -1)
    return sorted(str(f) for f in families)


async def test_a_redemption_resent_by_its_page_signs_in_as_the_device_the_lost_answer_carried(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    first, token = await _link(iserver, http)
    user_id = iserver.tokens.verify(first.token).sub
    before = await _devices(iserver, user_id)
    press = {"token": token, "attempt": "tg-auth-visit-0001"}
    lost = await _redeem_unanswered(iserver, press, user_id)
    assert len(lost) == 1

    page = Browser(http, iserver.url)
    again = await page.post("/api/auth/one_time", json=press)
    assert again.status == 200 and again.body["user_id"] == user_id and again.cookie, again.body
    assert [again.body["device_id"]] == lost
    # The browser holds the device the lost answer carried, which lasts; no second one opened.
    assert (await page.refresh()).body["user_id"] == user_id
    assert sorted(await _devices(iserver, user_id)) == sorted([*before, *lost])
    # The link's token alone, or with another attempt, is still a link used already.
    for other in ({"token": token}, {"token": token, "attempt": "someone-else-0001"}):
        refused = await Browser(http, iserver.url).post("/api/auth/one_time", json=other)
        assert (refused.status, refused.body["reason"]) == (401, "used"), refused.body
    # The same page once more, holding the cookie it got (its answer lost in turn): the same
    # device, left as it is (its cookie, rotated since, still works).
    third = await page.post("/api/auth/one_time", json=press)
    assert third.status == 200 and third.body["device_id"] == again.body["device_id"], third.body
    assert (await page.refresh()).status == 200
    assert sorted(await _devices(iserver, user_id)) == sorted([*before, *lost])
    # Refreshed twice since, and sent once more: the cookie it holds stays (the first again was
    # refused as a copied cookie at the next refresh, signing the device out; audit hostile3, 4).
    assert (await page.refresh()).status == 200
    fourth = await page.post("/api/auth/one_time", json=press)
    assert fourth.status == 200 and fourth.body["device_id"] == again.body["device_id"], fourth.body
    assert not fourth.cookie, fourth.body
    for _ in range(2):
        assert (await page.refresh()).status == 200
    assert sorted(await _devices(iserver, user_id)) == sorted([*before, *lost])


async def test_redemptions_of_one_attempt_sent_at_once_open_one_device(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """Audit "authsec", finding 4: twelve redemptions with one attempt at once answered twelve
    devices (the first had not noted its device yet when the others read the mark)."""
    first, token = await _link(iserver, http)
    user_id = iserver.tokens.verify(first.token).sub
    before = await _devices(iserver, user_id)
    press = {"token": token, "attempt": "tg-auth-visit-0003"}
    pages = [Browser(http, iserver.url) for _ in range(12)]
    answers = await asyncio.gather(*(page.post("/api/auth/one_time", json=press) for page in pages))
    assert [a.status for a in answers] == [200] * len(pages), [a.body for a in answers]
    assert len({a.body["device_id"] for a in answers}) == 1 and len({a.cookie for a in answers}) == 1
    opened = answers[0].body["device_id"]
    assert sorted(await _devices(iserver, user_id)) == sorted([*before, opened])
    # Whichever answer the browser kept, its cookie is the device's: it refreshes.
    assert (await pages[-1].refresh()).body["device_id"] == opened
    others = await asyncio.gather(
        *(
            Browser(http, iserver.url).post("/api/auth/one_time", json={"token": token, "attempt": f"other-{i:04d}"})
            for i in range(4)
        )
    )
    assert {(a.status, a.body["reason"]) for a in others} == {(401, "used")}


async def test_a_redemption_resent_after_the_grace_is_used(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    _, token = await _link(iserver, http)
    press = {"token": token, "attempt": "tg-auth-visit-0002"}
    assert (await Browser(http, iserver.url).post("/api/auth/one_time", json=press)).status == 200
    # The grace is the mark's TTL (a minute): past it, the mark is gone.
    marks = [k async for k in iserver.services.redis.scan_iter(match=iserver.services.keys.login_token("*"))]
    assert len(marks) == 1 and 0 < await iserver.services.redis.ttl(marks[0]) <= 60
    await iserver.services.redis.delete(*marks)
    refused = await Browser(http, iserver.url).post("/api/auth/one_time", json=press)
    assert (refused.status, refused.body["reason"]) == (401, "used")
    bad = await Browser(http, iserver.url).post("/api/auth/one_time", json={"token": token, "attempt": "a b"})
    assert bad.status == 400


def test_protocol_says_the_page_may_send_its_redemption_again() -> None:
    doc = " ".join(PROTOCOL.read_text(encoding="utf-8").split())
    assert 'Body `{"token", "attempt"?: [A-Za-z0-9_-]{8,64}}`' in doc


async def test_ones_own_link_resent_in_the_same_browser_is_that_redemption(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """A link opened in the browser of the device that made it signs that device out (its cookie
    is replaced); sent again with the same attempt, it is not "ended by a sign-out" for that."""
    browser, token = await _link(iserver, http)
    user_id = iserver.tokens.verify(browser.token).sub
    maker_cookie = browser.credential
    press = {"token": token, "attempt": "own-visit-0001"}
    first = await browser.post("/api/auth/one_time", json=press)
    assert first.status == 200, first.body
    browser.credential = maker_cookie  # the answer, and its cookie, lost
    again = await browser.post("/api/auth/one_time", json=press)
    assert again.status == 200 and again.body["device_id"] == first.body["device_id"], again.body
    assert await _devices(iserver, user_id) == [first.body["device_id"]]
