"""``sessionhub admin grant | revoke``: the admin permission stored with the user, read at refresh."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import socketio

from auth.claims import Permission
from protocol.errors import CodedError
from tests.admin.test_cli import cli
from server import admin_cli
from storage.clock import Clock
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.helpers import test_settings as settings_for
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
    # What it says of the tokens is what happens below: a device's are refused, a minted one kept.
    assert "devices' earlier tokens refused" in out and "`sessionhub token` keeps its rights" in out, out
    # The token minted before the revoke still says admin: the admin routes go by the grant as it
    # stands now (it opened them for the rest of its hour: audit "operatorday"), and once the
    # node has read the revoke (test_a_revoke_takes_the_admin_from_open_connections) the token
    # itself is refused.
    refused = await page.call("GET", "/admin/metrics")
    assert refused.status in (401, 403) and "withdrawn" in refused.body["message"], refused.body
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


async def test_a_revoke_takes_the_admin_from_open_connections_and_earlier_tokens(
    iserver: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    """A withdrawn admin kept ``read_all`` (every session, every listening history) on its open
    sockets and its other routes until its token expired: up to an hour (the audit "operatorday"
    left it). Now every node refuses the earlier admin tokens of a device once it reads the revoke,
    and tells and closes their connections."""
    page = Browser(http, iserver.url)
    user_id = (await page.guest()).body["user_id"]
    await iserver.services.identities.set_admin(user_id, True)
    await page.refresh()
    assert Permission.ADMIN in iserver.tokens.verify(page.token).perms
    admin_token = page.token
    alices = await iserver.create_session("alice")
    watching = Client(iserver.url, admin_token)
    clients.append(watching)
    await watching.connect()
    assert (await watching.call("subscribe_on_session", {"session_id": alices}))["ok"]  # read_all
    assert (await page.call("GET", f"/voicebot/sessions/{alices}")).status == 200
    # An operator's own token (no device) and another admin's are not touched.
    operator = Client(iserver.url, iserver.token("root", perms=(Permission.ADMIN,)))
    clients.append(operator)
    await operator.connect()
    assert (await operator.call("subscribe_on_session", {"session_id": alices}))["ok"]

    await iserver.services.identities.set_admin(user_id, False)
    await watching.wait_for(lambda: not watching.sio.connected)
    told = watching.named("permissions_withdrawn")
    assert told and told[0]["error"] == "unauthorized" and "withdrawn" in told[0]["message"], watching.events
    assert operator.sio.connected and not operator.named("permissions_withdrawn")
    # The earlier token is refused everywhere: a connect, a read, a renewal in place.
    with pytest.raises(CodedError, match="withdrawn"):
        iserver.tokens.verify(admin_token)
    again = Client(iserver.url, admin_token)
    clients.append(again)
    refused: list[Any] = []
    again.sio.on("connect_error", refused.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await again.connect()
    assert refused and refused[0]["data"]["error"] == "unauthorized", refused
    assert "withdrawn" in refused[0]["data"]["message"], refused
    read = await page.call("GET", f"/voicebot/sessions/{alices}")
    assert read.status == 401 and "withdrawn" in read.body["message"], read.body
    # The refresh cookie gives the user as they stand now: no admin, and Alice's session is hers.
    await page.refresh()
    assert Permission.ADMIN not in iserver.tokens.verify(page.token).perms
    plain = Client(iserver.url, page.token)
    clients.append(plain)
    await plain.connect()
    assert (await plain.call("subscribe_on_session", {"session_id": alices}))["error"] == "forbidden"
    assert (await page.call("GET", f"/voicebot/sessions/{alices}")).status in (403, 404)

    # Granted again: the tokens minted after it carry the admin. (The withdrawal covers those issued
    # by its second: one minted within that second is refused until the next.)
    await iserver.services.identities.set_admin(user_id, True)
    iserver.services.clock.shift_ms += 1000
    await page.refresh()
    assert Permission.ADMIN in iserver.tokens.verify(page.token).perms
    back = Client(iserver.url, page.token)
    clients.append(back)
    await back.connect()
    assert (await back.call("subscribe_on_session", {"session_id": alices}))["ok"]


async def test_a_grant_against_a_redis_that_does_not_answer_says_so_on_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Redis that accepts and never answers (a `rediss://` URL to a plain port, or the reverse,
    looks like this): `admin grant` ended in an 88-line traceback, the reason was empty, and a
    password given as redis-py's query parameter was printed in clear (audit "tlsredis")."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # kept open, never answered

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0?password=hunter2-secret")
        code, _, err = await cli("admin", "grant", "someone")
        # The same, its name percent-encoded (redis-py decodes it): printed in clear (audit verify40).
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0?%70assword=hunter3-secret")
        encoded_code, _, encoded_err = await cli("admin", "grant", "someone")
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "no answer within 5 s" in err and "hunter2-secret" not in err and "password=***" in err, err
    assert encoded_code == 1 and "hunter3-secret" not in encoded_err and "%70assword=***" in encoded_err, encoded_err


async def test_a_revoke_from_a_host_whose_clock_is_behind_redis_still_withdraws_the_admin(
    iserver: ServerUnderTest,
    http: aiohttp.ClientSession,
    clients: list[Client],
    redis_process: RedisProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nodes mint ``iat`` on Redis' clock; a revoke run on a host two minutes behind it dated the
    withdrawal two minutes early, and the admin tokens minted in between kept the admin (audit
    verify40)."""
    page = Browser(http, iserver.url)
    user_id = (await page.guest()).body["user_id"]
    await iserver.services.identities.set_admin(user_id, True)
    await page.refresh()
    watching = Client(iserver.url, page.token)
    clients.append(watching)
    await watching.connect()

    class Behind(Clock):
        def host_s(self) -> float:
            return time.time() - 120

    monkeypatch.setattr(admin_cli, "Clock", Behind)
    assert await admin_cli._set_admin(settings_for(redis_process.url, tmp_path), user_id, False) == 0
    await watching.wait_for(lambda: not watching.sio.connected)
    assert watching.named("permissions_withdrawn"), watching.events
    with pytest.raises(CodedError, match="withdrawn"):
        iserver.tokens.verify(page.token)
