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
