"""Hostile input on the identity routes: wrong types, unknown fields, huge bodies, forged cookies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from tests.helpers import ServerUnderTest
from tests.identity.support import Browser


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def test_bad_bodies_are_refused_and_change_nothing(iserver: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    page = Browser(http, iserver.url)
    user_id = (await page.guest()).body["user_id"]
    for body, status in (
        ({"name": 5}, 400),
        ({"name": "Ada", "admin": True}, 400),
        ({"name": ""}, 400),
        ({"name": "x" * 61}, 400),
        ({"name": "a\u0000b"}, 400),
        ({"name": "x" * 5000}, 413),
    ):
        answer = await page.call("PATCH", "/api/auth/me", json=body)
        assert answer.status == status, (body, answer.body)
    profile = await iserver.services.identities.profile(user_id)
    assert (profile.name, profile.admin) == ("Guest", False)
    for body, status in (({"token": 123}, 400), ({"token": "x" * 5000}, 413), ({}, 400)):
        assert (await page.post("/api/auth/one_time", json=body)).status == status
    assert (await page.call("DELETE", "/api/auth/devices/..%2F..%2Fx")).status == 404
    assert (await page.call("GET", "/api/auth/me")).status == 200  # the identity still works


async def test_forged_and_oversized_cookies_are_refused_without_harm(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    page = Browser(http, iserver.url)
    await page.guest()
    family_id = page.credential.partition(".")[0]  # type: ignore[union-attr]
    for forged in (f"{family_id}.{'A' * 43}", f"{family_id}.", "x" * 4000, f"{family_id}.{'A' * 43}.extra"):
        answer = await Browser(http, iserver.url, credential=forged).refresh()
        assert answer.status == 401 and answer.body["reason"] in ("invalid", "expired"), forged
    assert (await page.refresh()).status == 200  # a guessed secret does not revoke the real device


async def test_a_guest_token_without_a_device_opens_one_device_however_often_it_is_refreshed(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    # A script's guest token (no page request: no device) refreshed as a page request opens this
    # browser's device once; repeating it must not open a device record each time.
    async with http.post(f"{iserver.url}/api/auth/guest") as response:
        assert response.status == 201
        first = await response.json()
    user_id, token = first["user_id"], first["token"]
    assert not first["device_id"]
    headers = {"Authorization": f"Bearer {token}", "X-Sessionhub-Client": "page"}
    devices = []
    for _ in range(5):
        async with http.post(f"{iserver.url}/api/auth/refresh", headers=headers) as response:
            assert response.status == 200, await response.text()
            devices.append((await response.json())["device_id"])
    redis, keys = iserver.services.redis, iserver.services.keys
    assert await redis.zcard(keys.user_families(user_id)) == 1
    assert devices[0] and not any(devices[1:]), devices
