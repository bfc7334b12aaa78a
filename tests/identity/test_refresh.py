"""The refresh cookie: an identity that outlives its access tokens, rotated, revoked on reuse, CSRF-proof."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from auth.claims import Permission
from protocol.errors import CodedError
from tests.helpers import ServerUnderTest, to_window_start
from tests.streams.helpers import create_stream
from tests.streams.helpers import http as http_call
from tests.identity.support import ACCESS_TTL_S, Browser


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


def _browser(http: aiohttp.ClientSession, server: ServerUnderTest) -> Browser:
    return Browser(http, server.url)


async def test_a_page_guest_gets_an_httponly_cookie_scoped_to_the_auth_routes(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    page = _browser(http, iserver)
    answer = await page.guest()
    assert answer.status == 201 and answer.cookie
    assert answer.cookie_attrs["httponly"] is True and answer.cookie_attrs["samesite"] == "Strict"
    assert answer.cookie_attrs["path"] == "/api/auth" and int(answer.cookie_attrs["max-age"]) > 30 * 86400
    assert answer.cookie not in answer.body.values()  # never readable by the page's scripts
    claims = iserver.tokens.verify(answer.body["token"])
    assert claims.guest and len(claims.fam) == 24 and claims.exp - iserver.services.clock.now_s() <= ACCESS_TTL_S


async def test_a_plain_post_gets_a_token_but_no_cookie(iserver: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{iserver.url}/api/auth/guest") as resp:
        assert resp.status == 201 and "Set-Cookie" not in resp.headers


async def test_the_cookie_restores_the_same_user_after_the_access_token_expired(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    # The visit happens an hour ago (tokens carry real times: the clock starts early, not ends late).
    iserver.services.clock.shift_ms = -(ACCESS_TTL_S + 3600) * 1000
    page = _browser(http, iserver)
    user_id = (await page.guest()).body["user_id"]
    session_id = await iserver.create_session(user=user_id)
    iserver.services.clock.shift_ms = 0  # now: no page was open since
    expired = await page.call("GET", "/api/me/sessions")
    assert expired.status == 401
    first = page.credential
    answer = await page.refresh()
    assert answer.status == 200 and answer.body["user_id"] == user_id
    assert answer.cookie and answer.cookie != first  # rotated on every use
    mine = await page.call("GET", "/api/me/sessions")
    assert mine.status == 200 and session_id in str(mine.body)


async def test_reusing_a_rotated_credential_revokes_the_whole_family(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    page = _browser(http, iserver)
    await page.guest()
    stolen = page.credential
    assert (await page.refresh()).status == 200
    token_before_theft = page.token
    iserver.services.clock.shift_ms += 61_000  # past the grace time (two tabs, a lost answer)
    thief = Browser(http, iserver.url, credential=stolen)
    reused = await thief.refresh()
    assert (reused.status, reused.body["error"], reused.body["reason"]) == (401, "unauthorized", "reused")
    legit = await page.refresh()  # the family is gone for the rightful device too
    assert (legit.status, legit.body["reason"]) == (401, "revoked")
    with pytest.raises(CodedError):  # and its access tokens are refused at once
        iserver.tokens.verify(token_before_theft)


async def test_two_tabs_refreshing_at_once_keep_the_family(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    page = _browser(http, iserver)
    user_id = (await page.guest()).body["user_id"]
    both = page.credential
    first = await page.refresh()
    second = await Browser(http, iserver.url, credential=both).refresh()  # the other tab, same old cookie
    assert first.status == second.status == 200 and second.body["user_id"] == user_id
    assert second.cookie == first.cookie  # the very credential the first tab got: one cookie jar
    assert (await page.refresh()).status == 200


async def test_a_refresh_whose_answer_was_lost_is_answered_again_when_sent_again(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """The network lost the answer of a refresh the server made: the browser still holds the
    credential it replaced, and sends it again. Within the grace time it gets the rotation's
    credential again; before, it got a token without one, and its next refresh after the grace
    time looked like a stolen cookie and signed the device out."""
    page = _browser(http, iserver)
    user_id = (await page.guest()).body["user_id"]
    before = page.credential
    lost = await page.refresh()
    assert lost.status == 200 and lost.cookie
    page.credential = before  # the answer never arrived
    iserver.services.clock.shift_ms += 30_000
    again = await page.refresh()
    assert again.status == 200 and again.body["user_id"] == user_id
    assert again.cookie == lost.cookie
    iserver.services.clock.shift_ms += 120_000  # long past the grace time: the device goes on
    later = await page.refresh()
    assert later.status == 200 and later.body["user_id"] == user_id and later.cookie != lost.cookie


async def test_csrf_a_cross_site_or_simple_request_is_refused_and_rotates_nothing(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    page = _browser(http, iserver)
    await page.guest()
    before = page.credential
    cross = await page.post("/api/auth/refresh", json={}, origin="https://evil.example")
    assert (cross.status, cross.body["error"], cross.body["reason"]) == (403, "forbidden", "cross_origin")
    simple = await page.post("/api/auth/refresh")  # what a cross-site form can send
    assert (simple.status, simple.body["reason"]) == (403, "simple_request")
    assert page.credential == before
    assert (await page.refresh()).status == 200  # the credential was neither rotated nor revoked
    custom = await page.post("/api/auth/refresh", headers={"X-Sessionhub-Client": "web"})
    assert custom.status == 200
    evil_guest = await page.post("/api/auth/guest", json={}, origin="https://evil.example")
    assert evil_guest.status == 403 and evil_guest.cookie is None


async def test_without_a_credential_the_refusal_says_so(iserver: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    answer = await _browser(http, iserver).refresh()
    assert (answer.status, answer.body["reason"]) == (401, "no_credential")
    forged = await Browser(http, iserver.url, credential="0" * 24 + "." + "x" * 43).refresh()
    assert (forged.status, forged.body["reason"]) == (401, "expired")
    garbage = await Browser(http, iserver.url, credential="not a credential").refresh()
    assert (garbage.status, garbage.body["reason"]) == (401, "invalid")


async def test_refreshes_are_rate_limited(iserver: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    to_window_start(iserver.services.clock)
    page = _browser(http, iserver)
    await page.guest()
    statuses = [(await page.refresh()).status for _ in range(iserver.services.limits.signins_per_min + 1)]
    assert statuses[:-1] == [200] * iserver.services.limits.signins_per_min and statuses[-1] == 429


async def test_an_old_page_with_a_guest_token_gets_its_cookie(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{iserver.url}/api/auth/guest") as resp:
        old = await resp.json()
    page = _browser(http, iserver)
    answer = await page.post("/api/auth/refresh", json={}, headers={"Authorization": f"Bearer {old['token']}"})
    assert answer.status == 200 and answer.cookie and answer.body["user_id"] == old["user_id"]
    assert (await page.refresh()).body["user_id"] == old["user_id"]


async def test_a_guest_lasts_its_idle_time_owning_or_not_an_account_owning_a_session_is_kept(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """A guest expires its idle time after its last visit; one owning something is listed by that
    visit, for the guest sweeper (tests/identity/test_guest_retention.py). An account's identity
    owning a session is kept (a device that is not a guest's: a passkey saved)."""
    keys, redis = iserver.services.keys, iserver.services.redis
    idle_s = iserver.services.identities.config.guest_idle_s
    page = _browser(http, iserver)
    user_id = (await page.guest()).body["user_id"]
    family = keys.family(page.credential.partition(".")[0])  # type: ignore[union-attr]
    assert 0 < await redis.ttl(keys.user_profile(user_id)) <= idle_s
    assert 0 < await redis.ttl(family) <= idle_s
    assert await redis.zscore(keys.guests_owning(), user_id) is None  # owns nothing: not listed
    await iserver.create_session(user=user_id)
    assert (await page.refresh()).status == 200
    assert 0 < await redis.ttl(keys.user_profile(user_id)) <= idle_s
    assert 0 < await redis.ttl(family) <= idle_s
    listed = await redis.zscore(keys.guests_owning(), user_id)  # by that visit
    assert listed is not None and 0 <= iserver.services.clock.now_ms() - listed < 5000
    await iserver.services.identities.mark_saved(user_id, True)  # saved: an account now
    assert (await page.refresh()).status == 200
    assert await redis.ttl(keys.user_profile(user_id)) == -1
    assert await redis.ttl(family) > idle_s
    assert await redis.zscore(keys.guests_owning(), user_id) is None


async def test_a_guest_is_listed_from_the_moment_it_owns_something_not_at_its_next_visit(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """A guest who makes a session, or only clips a moment in someone's stream, and leaves at
    once is listed as owning (by that moment) and its devices renewed then: what it made lasts
    its idle time from when it made it, not from the visit before."""
    keys, redis = iserver.services.keys, iserver.services.redis
    idle_s = iserver.services.identities.config.guest_idle_s
    stream_id = await create_stream(iserver, "alice")
    status, _ = await http_call(
        iserver, "POST", f"/api/streams/{stream_id}/state", user="alice", json={"action": "start"}
    )
    assert status == 200
    for owns in ("a session", "a clip"):
        page = _browser(http, iserver)
        user_id = (await page.guest()).body["user_id"]
        family = keys.family(page.credential.partition(".")[0])  # type: ignore[union-attr]
        await redis.expire(family, 10)  # as if its last visit were long ago
        iserver.services.clock.shift_ms += 1000
        if owns == "a session":
            assert (await page.call("POST", "/voicebot/create_session", json={"session_name": "mine"})).status == 201
        else:
            answer = await page.call("POST", f"/api/streams/{stream_id}/clips", json={"note": "that one"})
            assert answer.status == 201, answer.body
        # No refresh, no other page: listed, and its device renewed, now.
        listed = await redis.zscore(keys.guests_owning(), user_id)
        assert listed is not None and listed >= iserver.services.clock.now_ms() - 1000, owns
        assert idle_s - 5 <= await redis.ttl(family) <= idle_s, owns


async def test_admin_granted_on_the_server_arrives_at_the_next_refresh(
    iserver: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    page = _browser(http, iserver)
    user_id = (await page.guest()).body["user_id"]
    assert Permission.ADMIN not in iserver.tokens.verify(page.token).perms
    await iserver.services.identities.set_admin(user_id, True)
    await page.refresh()
    assert Permission.ADMIN in iserver.tokens.verify(page.token).perms
    await iserver.services.identities.set_admin(user_id, False)
    await page.refresh()
    assert Permission.ADMIN not in iserver.tokens.verify(page.token).perms
