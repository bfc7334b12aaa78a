"""A Redis restored from an older backup under running nodes keeps the sign-outs made since.

The backup's records bring back the devices signed out after it and the admins withdrawn after
it, and the nodes that were refusing them forgot them at their next full read of the revoked set
(audit "restore"). A node now keeps the revocations still in force and applies them again.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from auth.claims import Permission
from protocol.errors import CodedError
from storage.clock import Clock
from storage.identity.repository import split_credential
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.identity.support import ACCESS_TTL_S, Browser


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path / "redis")
    process.start()
    yield process
    process.stop()


@pytest_asyncio.fixture
async def node(own_redis: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await start_server(
        own_redis.url, tmp_path / "node", clock=Clock(), guest_token_ttl_s=ACCESS_TTL_S, revocation_poll_s=0.05
    )
    yield srv
    await srv.stop()


async def backed_up(own_redis: RedisProcess, redis: Any, tmp_path: Path) -> Path:
    """A backup of ``own_redis`` as an operator takes one: ``SAVE``, and its ``dump.rdb`` copied."""
    await redis.execute_command("SAVE")
    backup = tmp_path / "backup.rdb"
    shutil.copy(own_redis.dir / "dump.rdb", backup)
    return backup


def restore(own_redis: RedisProcess, backup: Path) -> None:
    """The backup put back under the running nodes: the same Redis stopped, started on it."""
    own_redis.stop()
    shutil.copy(backup, own_redis.dir / "dump.rdb")
    own_redis.start()


def refused(node: ServerUnderTest, token: str) -> bool:
    try:
        node.tokens.verify(token)
    except CodedError:
        return True
    return False


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Until ``check()`` holds: a bound for a node that never gets there, not a wait."""
    deadline = asyncio.get_running_loop().time() + 15
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


async def test_sign_outs_and_withdrawn_admins_made_after_the_backup_stay(
    node: ServerUnderTest, own_redis: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    identities, redis = node.services.identities, node.services.redis
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        phone, admin = Browser(http, node.url), Browser(http, node.url)
        phone_user = (await phone.guest()).body["user_id"]
        admin_user = (await admin.guest()).body["user_id"]
        await identities.set_admin(admin_user, True)
        await admin.refresh()
        assert Permission.ADMIN in node.tokens.verify(admin.token).perms
        backup = await backed_up(own_redis, redis, tmp_path)

        parts = split_credential(str(phone.credential))
        assert parts is not None
        family_key = node.services.keys.family(parts[0])

        async def both_refused() -> bool:
            return refused(node, phone.token) and refused(node, admin.token)

        async def family_revoked() -> bool:
            return bool(await redis.hget(family_key, "revoked") == "1")

        assert await identities.revoke(phone_user, parts[0])  # the phone signed out
        await identities.set_admin(admin_user, False)  # the admin withdrawn
        await until(both_refused, "the node refuses both")

        restore(own_redis, backup)

        # The node read the log gone back, kept what is still in force, and applied it again.
        await until(family_revoked, "the phone's device revoked again in Redis")
        assert await both_refused()
        assert (await phone.refresh()).status == 401  # its cookie ends with its device again
        refreshed = await admin.refresh()
        assert refreshed.status == 200 and Permission.ADMIN not in node.tokens.verify(admin.token).perms
        # Said, naming the user: an operator who granted it back since grants it again.
        said = [r.getMessage() for r in caplog.records if "withdrawn again" in r.getMessage()]
        assert said and admin_user in said[0], said


async def test_a_browser_that_rotated_its_cookie_since_the_backup_stays_signed_in(
    node: ServerUnderTest, own_redis: RedisProcess, tmp_path: Path
) -> None:
    """Each refresh rotates the cookie; a Redis restored from a backup before two or more of them
    knew none of the browser's secrets, and signed it out: a guest lost everything it made."""
    redis = node.services.redis
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        laptop = Browser(http, node.url)
        user_id = (await laptop.guest()).body["user_id"]
        backup = await backed_up(own_redis, redis, tmp_path)
        copy_then = laptop.credential
        for _ in range(3):  # a day of page loads after the backup
            assert (await laptop.refresh()).status == 200

        restore(own_redis, backup)

        again = await laptop.refresh()
        assert again.status == 200 and again.body["user_id"] == user_id, again.body
        assert (await laptop.refresh()).status == 200  # and on from there
        # The copy the backup knew as current was rotated away since: a reuse, as before the restore.
        copy = await Browser(http, node.url, credential=copy_then).refresh()
        assert (copy.status, copy.body["reason"]) == (401, "reused"), copy.body


async def test_two_tabs_refreshing_at_once_through_the_catch_up_both_stay_signed_in(
    node: ServerUnderTest, own_redis: RedisProcess, tmp_path: Path
) -> None:
    """The rotations replayed one at a time: the second of two refreshes presenting one cookie at
    once met a secret the first had just spent, and the device was revoked as a reuse (audit
    verify40b). Now one step: one rotates, the other is `concurrent`, as without a restore."""
    redis = node.services.redis
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        browser = Browser(http, node.url)
        user_id = (await browser.guest()).body["user_id"]
        backup = await backed_up(own_redis, redis, tmp_path)
        for _ in range(8):  # under the refreshes' rate limit, with the two that follow
            assert (await browser.refresh()).status == 200
        restore(own_redis, backup)

        tabs = [Browser(http, node.url, credential=browser.credential) for _ in range(2)]
        answers = await asyncio.gather(*(tab.refresh() for tab in tabs))
        assert [a.status for a in answers] == [200, 200], [a.body for a in answers]
        assert {a.body["user_id"] for a in answers} == {user_id}
        family_id = str(browser.credential).split(".", 1)[0]
        assert await redis.hget(node.services.keys.family(family_id), "revoked") is None
        for tab in tabs:  # each goes on with what it was answered
            if tab.credential != browser.credential:
                assert (await tab.refresh()).status == 200
                break


async def test_a_guest_made_after_the_backup_is_opened_again_by_its_token(
    node: ServerUnderTest, own_redis: RedisProcess, tmp_path: Path
) -> None:
    """A guest made in the second a Redis lost (a crash under `appendfsync everysec`; here a
    restore from a backup made just before) worked on its token, and its refresh was refused
    "expired" for good: an hour later it was locked out of what it had made meanwhile (audit
    "lastsecond"). Its refresh, with its token, opens its device again under its id; without a
    token, with another device's token, or once signed out, nothing is opened."""
    redis = node.services.redis
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        backup = await backed_up(own_redis, redis, tmp_path)
        phone, other = Browser(http, node.url), Browser(http, node.url)
        user = (await phone.guest()).body["user_id"]
        await other.guest()
        made = await phone.call("POST", "/voicebot/create_session", json={"session_name": "made in the lost second"})
        assert made.status == 201, made.body
        restore(own_redis, backup)
        family = str(split_credential(str(phone.credential))[0])  # type: ignore[index]

        assert (await phone.refresh()).status == 401  # the cookie alone: "expired", as before
        foreign = await phone.post("/api/auth/refresh", json={}, headers={"Authorization": f"Bearer {other.token}"})
        assert foreign.status == 401  # another device's token proves nothing of this one
        reopened = await phone.post("/api/auth/refresh", json={}, headers={"Authorization": f"Bearer {phone.token}"})
        assert reopened.status == 200, reopened.body
        assert (reopened.body["user_id"], reopened.body["device_id"], reopened.body["guest"]) == (user, family, True)
        assert reopened.cookie  # a fresh cookie for the same device
        assert (await phone.refresh()).status == 200  # and it rotates from now on, alone
        devices = await phone.call("GET", "/api/auth/me")
        assert devices.status == 200 and family in [d["device_id"] for d in devices.body["devices"]], devices.body

        # Signed out, the device is not opened again by the token it had.
        token = phone.token
        assert (
            await phone.post("/api/auth/logout", json={}, headers={"Authorization": f"Bearer {token}"})
        ).status == 200
        phone.credential = f"{family}.whatever"
        again = await phone.post("/api/auth/refresh", json={}, headers={"Authorization": f"Bearer {token}"})
        assert again.status == 401
