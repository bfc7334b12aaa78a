"""``sessionhub admin grant | revoke``: the admin permission stored with the user, read at refresh."""

from __future__ import annotations

import os
import pwd
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
    monkeypatch.setenv("USER", "somebody-else")  # what anyone may set: not who ran it
    code, out, err = await cli("admin", "grant", user_id)
    assert code == 0 and "granted" in out, err
    assert Permission.ADMIN not in iserver.tokens.verify(page.token).perms  # not before a refresh
    await page.refresh()
    assert Permission.ADMIN in iserver.tokens.verify(page.token).perms
    admin = await page.call("GET", "/admin/metrics")
    assert admin.status == 200
    code, out, _ = await cli("admin", "revoke", user_id)
    assert code == 0 and "revoked" in out
    # The token minted before the revoke still says admin: the admin routes go by the grant as it
    # stands now (it opened them for the rest of its hour: audit "operatorday").
    assert Permission.ADMIN in iserver.tokens.verify(page.token).perms
    refused = await page.call("GET", "/admin/metrics")
    assert refused.status == 403 and "withdrawn" in refused.body["message"], refused.body
    await page.refresh()
    assert Permission.ADMIN not in iserver.tokens.verify(page.token).perms
    # An operator's own token (`sessionhub token`: no device, no grant behind it) is not affected.
    operator = {"Authorization": f"Bearer {iserver.token('root', perms=(Permission.ADMIN,))}"}
    async with http.get(f"{iserver.url}/admin/audit", headers=operator) as answer:
        assert answer.status == 200
        entries = (await answer.json())["entries"]
    # Both are in the audit log, with who ran them.
    assert [(e["action"], e["target"]) for e in entries[:2]] == [("revoke_admin", user_id), ("grant_admin", user_id)]
    account = pwd.getpwuid(os.getuid()).pw_name  # the uid's, whatever $USER says
    assert all(e["actor"] == f"cli:{account}" and e["detail"] == {"known_user": True} for e in entries[:2]), entries
    code, out, err = await cli("admin", "revoke", "nobody-by-that-name")
    assert code == 0 and "revoked" in out and "a typo?" in err
    assert not await iserver.services.redis.exists(iserver.services.keys.user_profile("nobody-by-that-name"))
    code, out, err = await cli("admin", "grant", "nobody-by-that-name")
    assert code == 0 and "granted" in out and "a typo?" in err
    code, _, err = await cli("admin", "grant", "{bad id}")
    assert code == 2 and "not a user id" in err
