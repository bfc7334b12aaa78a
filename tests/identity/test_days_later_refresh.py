"""A device's refresh cookie runs out on the server's clock, not only by its record's Redis TTL.

A device's record (``Keys.family``) lived by its Redis TTL alone, which counts real time: with the
server's clock moved (an operator's setting, tests) a guest who owns nothing, back 31 days later,
was signed in again by its cookie (its 30 days had not passed in real time), and an account's
device after 181 days too. The record now keeps its expiry on the server's clock (``expires_ms``),
set with each extension of its TTL, and the rotation refuses it past that: ``expired``, the answer
the product gives for a sign-in whose record is gone (``test_days_later``). A record written by a
previous release, without the field, lives by its TTL as it did.
"""

from __future__ import annotations

import aiohttp
import pytest
from redis.asyncio import Redis

from storage.identity.repository import Identities
from tests.helpers import ServerUnderTest
from tests.identity.support import Browser
from tests.identity.test_days_later import IDLE_S, REFRESH_TTL_S, days_later, dserver, http

__all__ = ["dserver", "http"]  # the fixtures, shared with test_days_later

DAY_S = 86_400


def test_the_lifetimes_this_file_walks_past() -> None:
    assert IDLE_S == 30 * DAY_S and REFRESH_TTL_S == 180 * DAY_S


async def _guest(server: ServerUnderTest, http: aiohttp.ClientSession) -> tuple[Browser, str]:
    page = Browser(http, server.url)
    answer = await page.guest()
    assert answer.status == 201 and page.credential, answer.body
    return page, answer.body["user_id"]


def _family_id(page: Browser) -> str:
    assert page.credential
    return page.credential.partition(".")[0]


async def test_a_guest_who_owns_nothing_back_after_31_days_is_told_its_sign_in_has_expired(
    dserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    page, user_id = await _guest(dserver, http)
    family = dserver.services.keys.family(_family_id(page))
    days_later(dserver, 31)
    back = await page.refresh()
    # Before: 200, a token for the guest (the record's 30-day TTL had not run out in real time).
    assert (back.status, back.body.get("reason")) == (401, "expired"), back.body
    assert not await redis.exists(family)  # gone, as its TTL would have let it go
    assert await dserver.services.identities.devices(user_id) == []


async def test_a_guest_back_within_its_time_is_signed_in_and_its_time_starts_again(
    dserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    page, user_id = await _guest(dserver, http)
    days_later(dserver, 29)
    assert (await page.refresh()).status == 200
    days_later(dserver, 29)  # 58 days after it came, 29 after its last visit
    back = await page.refresh()
    assert back.status == 200 and back.body["user_id"] == user_id, back.body
    assert [d.family_id for d in await dserver.services.identities.devices(user_id)] == [_family_id(page)]


async def test_a_guest_that_came_to_own_something_is_kept_from_then(
    dserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """``owns_now`` extends every device of the guest from the moment it made something."""
    page, user_id = await _guest(dserver, http)
    days_later(dserver, 20)
    await dserver.services.identities.owns_now(user_id)
    days_later(dserver, 20)  # 40 days after its sign-in, 20 after it came to own something
    assert (await page.refresh()).status == 200


@pytest.mark.parametrize(("days", "status"), [(179, 200), (181, 401)])
async def test_an_accounts_device_lasts_the_refresh_lifetime_on_the_servers_clock(
    dserver: ServerUnderTest, days: int, status: int
) -> None:
    identities: Identities = dserver.services.identities
    await identities.set_admin("alice", True)  # kept: its devices live refresh_ttl_s
    _, credential = await identities.open_family("alice", label="laptop", grant={})
    days_later(dserver, days)
    rotation = await identities.rotate(credential)
    # Before: 'rotated' at 181 days too (the record's 180-day TTL counts real time).
    assert rotation.outcome == ("rotated" if status == 200 else "missing"), rotation


async def test_a_record_of_a_previous_release_lives_by_its_ttl_and_is_judged_once_rotated(
    dserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    page, _ = await _guest(dserver, http)
    family = dserver.services.keys.family(_family_id(page))
    await redis.hdel(family, "expires_ms")  # as the previous release wrote it
    days_later(dserver, 31)
    assert (await page.refresh()).status == 200  # its TTL, real time, decides: as before
    assert await redis.hget(family, "expires_ms")  # the rotation wrote it
    days_later(dserver, 31)
    assert (await page.refresh()).body.get("reason") == "expired"


async def test_a_device_past_its_time_is_not_listed_among_the_users_devices(dserver: ServerUnderTest) -> None:
    identities: Identities = dserver.services.identities
    await identities.set_admin("alice", True)
    laptop, _ = await identities.open_family("alice", label="laptop", grant={})
    phone, phone_credential = await identities.open_family("alice", label="phone", grant={})
    days_later(dserver, 100)
    assert (await identities.rotate(phone_credential)).outcome == "rotated"  # the phone is used
    days_later(dserver, 100)  # the laptop, 200 days unused, is past its 180
    # Before: both listed (the laptop's record lived on by its TTL, real time).
    assert [device.family_id for device in await identities.devices("alice")] == [phone]
    assert laptop != phone
