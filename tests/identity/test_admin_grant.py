"""``sessionhub admin grant | revoke``: the admin permission stored with the user, read at refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from auth.claims import Permission
from tests.admin.test_cli import cli
from tests.helpers import RedisProcess, ServerUnderTest
from tests.identity.support import Browser


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def test_grant_and_revoke_reach_the_users_tokens_at_the_next_refresh(
    iserver: ServerUnderTest, http: aiohttp.ClientSession, redis_process: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = Browser(http, iserver.url)
    user_id = (await page.guest()).body["user_id"]
    monkeypatch.setenv("REDIS_URL", redis_process.url)  # inherited by the CLI process
    code, out, err = await cli("admin", "grant", user_id)
    assert code == 0 and "granted" in out, err
    assert Permission.ADMIN not in iserver.tokens.verify(page.token).perms  # not before a refresh
    await page.refresh()
    assert Permission.ADMIN in iserver.tokens.verify(page.token).perms
    admin = await page.call("GET", "/admin/metrics")
    assert admin.status == 200
    code, out, _ = await cli("admin", "revoke", user_id)
    assert code == 0 and "revoked" in out
    await page.refresh()
    assert Permission.ADMIN not in iserver.tokens.verify(page.token).perms
    code, _, err = await cli("admin", "grant", "{bad id}")
    assert code == 2 and "not a user id" in err
