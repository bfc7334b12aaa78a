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

import secrets
import subprocess

import aiohttp
import pytest
from redis.asyncio import Redis

from storage.identity.repository import Identities, _digest
from tests.helpers import ServerUnderTest
from tests.identity.support import Browser
from tests.identity.test_days_later import IDLE_S, REFRESH_TTL_S, days_later, dserver, http
from tests.upgrade_world import HEAD_ROOT, RELEASES, release_available

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


async def test_a_guest_that_saved_a_passkey_keeps_its_devices_for_the_refresh_lifetime(
    dserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """Saving a passkey makes a guest live as long as its devices are used (README), but only
    its profile was extended: the laptop it saved it on kept the guest's 30 days, and was told
    41 days later that its sign-in had expired and its things were deleted (they were not)."""
    page, user_id = await _guest(dserver, http)
    await dserver.services.identities.mark_saved(user_id, True)  # what adding a passkey does
    days_later(dserver, 41)
    back = await page.refresh()
    assert back.status == 200 and back.body["user_id"] == user_id, back.body
    # Its last passkey removed, it is a passing guest again: its devices last its idle time from then.
    await dserver.services.identities.mark_saved(user_id, False)
    days_later(dserver, 31)
    assert (await page.refresh()).body.get("reason") == "expired"


async def test_a_guest_saved_before_its_devices_were_kept_keeps_them_from_its_next_visit(
    dserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """An upgrade: a guest saved with a passkey by a release whose ``mark_saved`` extended only
    the profile (its devices kept the guest's 30 days from their last use). Its next visit, on
    any device, keeps them all for the refresh lifetime: the laptop left unused since is not
    signed out 30 days later (an upgrade audit)."""
    laptop, user_id = await _guest(dserver, http)
    link = (await laptop.call("POST", "/api/auth/link")).body["url"].split("token=", 1)[1]
    phone = Browser(http, dserver.url)
    assert (await phone.post("/api/auth/one_time", json={"token": link})).status == 200
    await dserver.services.redis.hset(dserver.services.keys.user_profile(user_id), "saved", 1)  # as it was
    days_later(dserver, 20)
    assert (await phone.refresh()).status == 200  # the phone in use; the laptop left
    days_later(dserver, 20)  # 40 days after the laptop's last use
    back = await laptop.refresh()
    assert back.status == 200 and back.body["user_id"] == user_id, back.body


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


PREVIOUS_RELEASE = RELEASES["previous"]


def _previous_release_rotate() -> str:
    """The previous release's rotate.lua, as its nodes run it during a rolling upgrade (or after
    a rollback): it extends the record's TTL and writes last_used_ms, but knows no expires_ms."""
    if not release_available(PREVIOUS_RELEASE):
        pytest.skip(f"the release {PREVIOUS_RELEASE} is not in this clone (a shallow one?)")
    return subprocess.run(
        ["git", "-C", str(HEAD_ROOT), "show", f"{PREVIOUS_RELEASE}:storage/identity/lua/rotate.lua"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


async def test_a_device_used_on_a_previous_release_node_keeps_the_time_that_use_gave_it(
    dserver: ServerUnderTest, redis: Redis
) -> None:
    """Opened on this release (expires_ms: 30 days on), used on day 20 on a node of the previous
    release (a rolling upgrade, a rollback), whose rotation extends the record's TTL but leaves
    expires_ms as it was; back on day 35, 15 days after that use. Before: refused 'missing' (the
    stale expires_ms of day 30), the guest signed out with its device in its time. Now an
    expires_ms written before the record's last use is not judged: the TTL decides, as the
    previous release would, and this release's rotation writes the field afresh."""
    old_rotate = _previous_release_rotate()
    identities: Identities = dserver.services.identities
    keys = dserver.services.keys
    family_id, credential = await identities.open_family("guest-oldnode", label="phone", grant={"guest": True})
    secret = credential.partition(".")[2]
    days_later(dserver, 20)
    fresh = secrets.token_urlsafe(32)
    config = identities.config
    outcome = await redis.eval(  # type: ignore[misc]
        old_rotate,
        2,
        keys.family(family_id),
        keys.family_spent(family_id),
        _digest(secret),
        _digest(fresh),
        dserver.services.clock.now_ms(),
        config.refresh_ttl_s,
        int(config.rotation_grace_s * 1000),
        config.spent_max,
    )
    assert outcome[0] == "rotated", outcome
    days_later(dserver, 15)
    assert [device.family_id for device in await identities.devices("guest-oldnode")] == [family_id]
    rotation = await identities.rotate(f"{family_id}.{fresh}.{secret}")
    assert rotation.outcome == "rotated", rotation
    assert [device.family_id for device in await identities.devices("guest-oldnode")] == [family_id]
    days_later(dserver, 31)  # judged again from this release's rotation
    assert (await identities.rotate(rotation.credential or "")).outcome == "missing"
