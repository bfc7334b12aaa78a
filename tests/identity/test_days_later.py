"""A person who comes back days later: the server's clock is moved, and tokens are judged on it.

Tokens are minted on the node's clock (``storage.clock``), which also runs guest retention; they
must be judged on that clock too (``TokenService.judge_on``, set by ``build_services``). Judged on
the wall clock, a server whose clock was moved days ahead refused the token it had just minted
("not valid yet": its ``iat`` lay days in the wall clock's future), and accepted at
``TokenService.verify`` one that had run out days ago on its own clock. The server here runs the
default lifetimes (access token an hour, refresh cookie 180 days, guest retention 30 days).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from handlers.guest_retention import GUEST_SWEEPER, GuestSweeper
from protocol.errors import CodedError
from server.settings import Settings
from storage.clock import Clock
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.identity.support import Browser
from tests.identity.test_guest_retention import owning_guest

DAY_S = 86_400
DEFAULTS = Settings.model_fields
ACCESS_TTL_S: int = DEFAULTS["guest_token_ttl_s"].default
IDLE_S: int = DEFAULTS["guest_idle_s"].default
REFRESH_TTL_S: int = DEFAULTS["refresh_ttl_s"].default


@pytest_asyncio.fixture
async def dserver(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server with the default lifetimes, on a clock the test moves."""
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, clock=Clock())
    yield srv
    await srv.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


def days_later(server: ServerUnderTest, days: float) -> None:
    server.services.clock.shift_ms += int(days * DAY_S * 1000)


def test_the_defaults_this_file_walks_past() -> None:
    # The days below are chosen around these: a day and eight days are past the access token and
    # within the guest retention; 31 days is past the retention, within the refresh cookie.
    assert ACCESS_TTL_S < DAY_S and IDLE_S == 30 * DAY_S and REFRESH_TTL_S > 31 * DAY_S


async def test_a_token_minted_on_a_clock_moved_days_ahead_is_accepted_there(
    dserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    days_later(dserver, 8)
    page = Browser(http, dserver.url)
    answer = await page.guest()
    assert answer.status == 201
    # Before: refused "invalid token" (iat eight days in the wall clock's future).
    mine = await page.call("GET", "/api/me/sessions")
    assert mine.status == 200, mine.body
    client = await Client(dserver.url, page.token).connect()
    try:
        assert client.sio.connected
    finally:
        await client.close()


async def test_a_token_run_out_on_the_servers_clock_is_refused_by_the_token_service(
    dserver: ServerUnderTest,
) -> None:
    token = dserver.token("alice", ttl_s=ACCESS_TTL_S)
    assert dserver.tokens.verify(token).sub == "alice"
    days_later(dserver, 1)
    # Before: verify judged exp on the wall clock and accepted it (only some callers looked again).
    with pytest.raises(CodedError, match="token expired"):
        dserver.tokens.verify(token)


@pytest.mark.parametrize("days", [1, 8])
async def test_a_guest_back_after_days_in_the_same_browser_is_signed_in_and_owns_what_it_made(
    dserver: ServerUnderTest, http: aiohttp.ClientSession, days: int
) -> None:
    page, ids = await owning_guest(dserver, http)
    days_later(dserver, days)
    assert (await page.call("GET", "/api/me/sessions")).status == 401  # the tab's old token ran out
    back = await page.refresh()  # what the page does first: its cookie signs it back in
    assert back.status == 200 and back.body["user_id"] == ids["user"] and back.body["guest"] is True
    mine = await page.call("GET", "/api/me/sessions")
    assert mine.status == 200, mine.body  # before: 401 invalid token, minted days ahead of the wall clock
    listed = str(mine.body)
    for kind in ("voice", "stream", "pattern"):
        assert ids[kind] in listed, kind
    client = await Client(dserver.url, page.token).connect()  # the page's socket, on the fresh token
    try:
        assert client.sio.connected
    finally:
        await client.close()
    swept = await sweeper(dserver).sweep()  # within the retention: nothing of it goes
    assert swept.sessions_deleted == 0


async def test_a_guest_back_after_31_days_is_told_its_sign_in_has_expired(
    dserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    """Past the retention the guest's things and devices are let go (their keys' TTLs, and the
    sweeper): the refresh says ``expired``, which the page turns into words, not a raw 401."""
    page, ids = await owning_guest(dserver, http)
    days_later(dserver, 31)
    swept = await sweeper(dserver).sweep()
    assert swept.guests_forgotten == 1 and swept.sessions_deleted == 3, swept
    back = await page.refresh()
    assert (back.status, back.body.get("reason")) == (401, "expired"), back.body
    assert await redis.exists(dserver.services.keys.session(ids["pattern"]))  # a pattern is kept (seeds 001/004)


def sweeper(server: ServerUnderTest) -> GuestSweeper:
    return server.app[GUEST_SWEEPER]


async def test_a_guests_device_unused_for_a_month_stays_while_another_keeps_the_guest(
    dserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """A guest's phone made things and linked a laptop; only the laptop came back (day 25). On
    day 31 the guest lived and kept everything, and the phone was told its sign-in had expired
    (audit "daysdevices"): each device was kept its idle time from its own last use."""
    phone, ids = await owning_guest(dserver, http)
    link = await phone.call("POST", "/api/auth/link")
    assert link.status == 201, link.body
    laptop = Browser(http, dserver.url)
    linked = await laptop.post("/api/auth/one_time", json={"token": link.body["url"].split("token=", 1)[1]})
    assert linked.status == 200 and linked.body["user_id"] == ids["user"]
    days_later(dserver, 25)
    assert (await laptop.refresh()).status == 200  # the laptop's visit
    days_later(dserver, 6)  # day 31: the phone unused for 31 days, the guest seen 6 days ago
    swept = await sweeper(dserver).sweep()
    assert swept.guests_forgotten == 0 and swept.sessions_deleted == 0, swept
    back = await phone.refresh()
    assert back.status == 200 and back.body["user_id"] == ids["user"], back.body
    devices = await phone.call("GET", "/api/auth/me")
    assert len(devices.body["devices"]) == 2, devices.body
