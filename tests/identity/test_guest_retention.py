"""A guest's things live as long as the guest: kept while it visits, gone with it.

A guest that owns voice or stream sessions or a listening history is listed by its last visit;
once idle past ``guest_idle_s`` (and its last token's life) the sweeper deletes them, their audio
files, its devices and profile; its pattern sessions stay (permanent, seeds 001/004). The server's
clock is moved (``services.clock.shift_ms``); Redis's own TTLs run on real time, so a test checks
the TTL a key was given rather than waiting for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from handlers.guest_retention import GUEST_SWEEPER, GuestSweeper
from storage.clock import Clock
from tests.audio_samples import webm
from tests.helpers import RedisProcess, ServerUnderTest
from tests.identity.support import ACCESS_TTL_S, Browser
from tests.voice.uploads import chunk_form, upload

IDLE_S = 3600


@pytest_asyncio.fixture
async def gserver(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose guests idle out after an hour, on a clock the test moves."""
    from tests.conftest import start_server

    srv = await start_server(
        redis_process.url, tmp_path, clock=Clock(), guest_token_ttl_s=ACCESS_TTL_S, guest_idle_s=IDLE_S
    )
    yield srv
    await srv.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def sweeper(server: ServerUnderTest) -> GuestSweeper:
    return server.app[GUEST_SWEEPER]


def gone_for(server: ServerUnderTest, seconds: int) -> None:
    """Move the server's clock ``seconds`` on."""
    server.services.clock.shift_ms += seconds * 1000


GONE_S = IDLE_S + ACCESS_TTL_S + 1  # idle, and its last token run out


async def blob_files(server: ServerUnderTest) -> list[Path]:
    root = server.services.voice.config.blob_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def mentioning(redis: Redis, words: list[str]) -> list[str]:
    """The keys without a TTL (what stays for good) whose name, or a member or field of which,
    mentions one of ``words``."""
    found: list[str] = []
    async for key in redis.scan_iter(count=1000):
        if await redis.ttl(key) != -1:
            continue
        kind = await redis.type(key)
        members: list[str] = [key]
        if kind == "zset":
            members += await redis.zrange(key, 0, -1)
        elif kind == "hash":
            members += list(await redis.hkeys(key))  # type: ignore[misc]
        elif kind == "set":
            members += list(await redis.smembers(key))  # type: ignore[misc]
        if any(word in member for member in members for word in words):
            found.append(key)
    return found


async def owning_guest(server: ServerUnderTest, http: aiohttp.ClientSession) -> tuple[Browser, dict[str, str]]:
    """A guest page that made a voice session with one audio chunk, a stream session, a
    listening history and a pattern: (its browser, ids by kind)."""
    page = Browser(http, server.url)
    user_id = (await page.guest()).body["user_id"]
    made = await page.call("POST", "/voicebot/create_session", json={"session_name": "notes"})
    assert made.status == 201, made.body
    voice_id = made.body["session_id"]
    status, body = await upload(server, page.token, chunk_form(voice_id, webm(1500)))
    assert status == 201, body
    stream = await page.call("POST", "/api/streams", json={"title": "Raid"})
    assert stream.status == 201, stream.body
    now_ms = server.services.clock.now_ms()
    played = {"item_id": "book", "device_id": "d1", "client_id": "c1", "started_at": now_ms - 9000, "ended_at": now_ms}
    listened = await page.call("POST", "/api/listening/upload", json=played)
    assert listened.status == 201, listened.body
    pattern = await page.call("POST", "/api/sessions", json={"name": "loop"})
    assert pattern.status == 201, pattern.body
    history = await server.services.redis.get(server.services.keys.listening_history(user_id))
    ids = {
        "user": user_id,
        "voice": voice_id,
        "stream": stream.body["session"]["session_id"],
        "listening": str(history),
        "pattern": pattern.body["id"],
    }
    return page, ids


async def test_a_gone_guests_sessions_audio_and_identity_go_its_patterns_stay(
    gserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    keys = gserver.services.keys
    page, ids = await owning_guest(gserver, http)
    assert len(await blob_files(gserver)) == 1
    kinds_before: dict[str, str] = await redis.hgetall(keys.admin_kind_of())  # type: ignore[misc]
    assert {ids["voice"], ids["stream"], ids["pattern"]} <= set(kinds_before)
    # Kept for the idle time from its last visit, owning or not (it was kept for good).
    assert 0 < await redis.ttl(keys.user_profile(ids["user"])) <= IDLE_S
    assert 0 < await redis.ttl(keys.family(page.credential.partition(".")[0])) <= IDLE_S  # type: ignore[union-attr]

    gone_for(gserver, IDLE_S)  # idle, but a token of its last visit may still be used
    assert (await sweeper(gserver).sweep()).sessions_deleted == 0
    gone_for(gserver, GONE_S - IDLE_S)
    swept = await sweeper(gserver).sweep()

    assert (swept.guests_forgotten, swept.sessions_deleted) == (1, 3), swept
    for kind in ("voice", "stream", "listening"):
        assert not await redis.exists(keys.session(ids[kind])), kind
    assert await redis.exists(keys.session(ids["pattern"]))
    assert await blob_files(gserver) == []
    kinds_after: dict[str, str] = await redis.hgetall(keys.admin_kind_of())  # type: ignore[misc]
    assert set(kinds_before) - set(kinds_after) == {ids["voice"], ids["stream"], ids["listening"]} | {
        sid for sid, kind in kinds_before.items() if kind == "stream_audience"
    }
    bytes_by_kind: dict[str, str] = await redis.hgetall(keys.admin_bytes())  # type: ignore[misc]
    assert all(int(v) == 0 for k, v in bytes_by_kind.items() if k != "pattern"), bytes_by_kind
    assert await redis.zscore(keys.guests_owning(), ids["user"]) is None
    # Nothing of it stays for good but its pattern: its lists, profile and devices went too.
    gone = [ids[name] for name in ("user", "voice", "stream", "listening")]
    assert await mentioning(redis, gone) == []
    assert (await page.refresh()).status == 401


async def test_a_guest_who_comes_back_within_the_idle_time_keeps_everything(
    gserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    """Every visit renews: a refresh of its device, or of a token alone (a script's guest)."""
    keys = gserver.services.keys
    page, ids = await owning_guest(gserver, http)
    async with http.post(f"{gserver.url}/api/auth/guest") as resp:
        script = await resp.json()  # a guest with a token alone, no device
    made = await http.post(
        f"{gserver.url}/voicebot/create_session",
        json={"session_name": "bot"},
        headers={"Authorization": f"Bearer {script['token']}"},
    )
    assert made.status == 201
    script_session = (await made.json())["session_id"]
    gone_for(gserver, ACCESS_TTL_S - 10)
    async with http.post(  # the script renews its token (no device: not a page) before it runs out: a visit
        f"{gserver.url}/api/auth/refresh", headers={"Authorization": f"Bearer {script['token']}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["device_id"] == ""
    gone_for(gserver, IDLE_S // 2)
    assert (await page.refresh()).status == 200  # the page comes back
    gone_for(gserver, GONE_S - IDLE_S // 2 - ACCESS_TTL_S + 20)  # gone, if counted from their first visit
    assert (await sweeper(gserver).sweep()).sessions_deleted == 0
    for kind in ("voice", "stream", "listening", "pattern"):
        assert await redis.exists(keys.session(ids[kind])), kind
    assert await redis.exists(keys.session(script_session))
    assert len(await blob_files(gserver)) == 1
    gone_for(gserver, GONE_S)
    assert (await sweeper(gserver).sweep()).guests_forgotten == 2


async def test_a_guest_saved_with_a_passkey_or_made_an_admin_keeps_everything(
    gserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    keys = gserver.services.keys
    identities = gserver.services.identities
    _, saved = await owning_guest(gserver, http)
    _, admin = await owning_guest(gserver, http)
    await identities.mark_saved(saved["user"], True)  # as a passkey's registration does
    await identities.set_admin(admin["user"], True)
    gone_for(gserver, GONE_S * 3)
    swept = await sweeper(gserver).sweep()
    assert (swept.sessions_deleted, swept.guests_kept) == (0, 1)  # the saved one left the list at once
    for ids in (saved, admin):
        assert await redis.ttl(keys.user_profile(ids["user"])) == -1
        for kind in ("voice", "stream", "listening"):
            assert await redis.exists(keys.session(ids[kind])), kind
    assert await redis.zcard(keys.guests_owning()) == 0


async def test_each_tick_deletes_a_bounded_number_and_the_next_goes_on(
    gserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    keys = gserver.services.keys
    page = Browser(http, gserver.url)
    user_id = (await page.guest()).body["user_id"]
    made = [await page.call("POST", "/voicebot/create_session", json={"session_name": f"s{i}"}) for i in range(7)]
    assert [m.status for m in made] == [201] * 7
    gone_for(gserver, GONE_S)
    ticks: list[tuple[int, int]] = []
    while await redis.zscore(keys.guests_owning(), user_id) is not None:
        swept = await sweeper(gserver).sweep(sessions=3)
        ticks.append((swept.sessions_deleted, swept.guests_forgotten))
        assert len(ticks) < 10
    assert ticks == [(3, 0), (3, 0), (1, 1)]
    assert not any([await redis.exists(keys.session(m.body["session_id"])) for m in made])
    assert not await redis.exists(keys.user_profile(user_id), keys.user_recent(user_id), keys.user_sessions(user_id))


async def test_the_server_sweeps_gone_guests_by_itself(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    from tests.conftest import start_server

    clock = Clock()
    srv = await start_server(redis_process.url, tmp_path, clock=clock, guest_idle_s=IDLE_S, cleanup_retry_s=0.05)
    try:
        async with aiohttp.ClientSession() as session:
            _, ids = await owning_guest(srv, session)
        keys = srv.services.keys
        clock.shift_ms += (IDLE_S + srv.services.limits.guest_token_ttl_s + 1) * 1000

        async def forgotten() -> bool:
            return await redis.zcard(keys.guests_owning()) == 0

        deadline = asyncio.get_running_loop().time() + 5
        while not await forgotten() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert await forgotten()
        assert not await redis.exists(keys.session(ids["voice"]), keys.session(ids["stream"]))
        assert await blob_files(srv) == []
    finally:
        await srv.stop()


async def test_guests_that_owned_sessions_before_the_index_are_listed_and_swept(
    gserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    """Before the index, a guest that owned something was kept for good (its profile persisted)
    and listed nowhere: the sweeper lists such guests from the global session index, a page a
    tick, by their devices' last use; a saved one is not listed."""
    keys = gserver.services.keys
    _, old = await owning_guest(gserver, http)
    recent_page, recent = await owning_guest(gserver, http)
    _, saved = await owning_guest(gserver, http)
    await gserver.services.identities.mark_saved(saved["user"], True)
    for ids in (old, recent, saved):  # as the version before left them
        await redis.zrem(keys.guests_owning(), ids["user"])
        await redis.persist(keys.user_profile(ids["user"]))
    gone_for(gserver, GONE_S)
    # The recent one's device was used a moment ago (a refresh on a node of the version before).
    family_id = recent_page.credential.partition(".")[0]  # type: ignore[union-attr]
    await redis.zadd(keys.user_families(recent["user"]), {family_id: gserver.services.clock.now_ms()})

    sweeper(gserver).backfill_per_tick = 2
    ticks = [await sweeper(gserver).sweep() for _ in range(10)]  # 15 sessions (5 each): 8 pages
    assert sum(t.sessions_deleted for t in ticks) == 3 and sum(t.guests_forgotten for t in ticks) == 1
    assert not await redis.exists(keys.session(old["voice"]), keys.user_profile(old["user"]))
    assert await blob_files(gserver) != [] and await redis.exists(keys.session(recent["voice"]))
    assert await redis.exists(keys.session(saved["voice"]), keys.session(saved["stream"]))
    assert await redis.zscore(keys.guests_owning(), recent["user"]) is not None
    assert await redis.zscore(keys.guests_owning(), saved["user"]) is None
    assert await redis.get(keys.guests_backfill()) == "done"


async def test_a_guest_that_cannot_be_swept_is_tried_later_and_the_others_go(
    gserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    keys = gserver.services.keys
    _, broken = await owning_guest(gserver, http)
    _, fine = await owning_guest(gserver, http)
    await redis.delete(keys.log(broken["voice"]))
    await redis.set(keys.log(broken["voice"]), "not a stream")  # its deletion's script fails
    gone_for(gserver, GONE_S)
    swept = await sweeper(gserver).sweep()
    assert swept.guests_forgotten == 1 and not await redis.exists(keys.user_profile(fine["user"]))
    assert await redis.exists(keys.session(broken["voice"]))
    assert (await sweeper(gserver).sweep()).guests_forgotten == 0  # not at every tick
    await redis.delete(keys.log(broken["voice"]))  # mended
    gone_for(gserver, 86_400)
    assert (await sweeper(gserver).sweep()).guests_forgotten == 1
    assert not await redis.exists(keys.session(broken["voice"]))


async def test_me_says_how_long_a_guest_is_kept(gserver: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    page = Browser(http, gserver.url)
    user_id = (await page.guest()).body["user_id"]
    assert (await page.call("GET", "/api/auth/me")).body["forgotten_after_s"] == IDLE_S
    await gserver.services.identities.mark_saved(user_id, True)
    assert (await page.call("GET", "/api/auth/me")).body["forgotten_after_s"] is None
    account = Browser(http, gserver.url, token=gserver.token("alice"))
    assert (await account.call("GET", "/api/auth/me")).body["forgotten_after_s"] is None


async def test_a_guest_another_node_is_sweeping_is_left_to_it(
    gserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    keys = gserver.services.keys
    _, ids = await owning_guest(gserver, http)
    gone_for(gserver, GONE_S)
    lease = keys.guest_sweep_lease(ids["user"])
    await redis.set(lease, "another node", px=60_000)  # another node holds the guest
    swept = await sweeper(gserver).sweep()
    assert (swept.guests_forgotten, swept.sessions_deleted) == (0, 0), swept
    assert await redis.exists(keys.session(ids["voice"])) and await redis.get(lease) == "another node"
    await redis.delete(lease)  # its lease ran out (that node died mid-sweep): this one takes the guest
    swept = await sweeper(gserver).sweep()
    assert (swept.guests_forgotten, swept.sessions_deleted) == (1, 3), swept
    assert not await redis.exists(lease, keys.session(ids["voice"]))


async def test_the_listing_of_older_guests_reads_every_session_of_a_crowded_millisecond(
    gserver: ServerUnderTest, http: aiohttp.ClientSession, redis: Redis
) -> None:
    """The global session index orders sessions by creation time, and one millisecond may hold
    more of them than a page of the listing (an import, a burst). Each page goes on after the
    sessions of its last millisecond it read: it used to step past that millisecond, so the
    ties beyond the first page were never read and their guests, never listed, kept for good."""
    keys = gserver.services.keys
    owners = [await owning_guest(gserver, http) for _ in range(3)]
    for _, ids in owners:
        await redis.zrem(keys.guests_owning(), ids["user"])
        await redis.persist(keys.user_profile(ids["user"]))
    crowded: list[str] = await redis.zrange(keys.all_sessions(), 0, -1)
    assert len(crowded) >= 9
    await redis.zadd(keys.all_sessions(), dict.fromkeys(crowded, 1_700_000_000_000))  # one millisecond
    gone_for(gserver, GONE_S)
    sweeper(gserver).backfill_per_tick = 2
    ticks = [await sweeper(gserver).sweep() for _ in range(len(crowded))]
    assert await redis.get(keys.guests_backfill()) == "done"
    assert sum(t.guests_forgotten for t in ticks) == len(owners), ticks
    for _, ids in owners:
        assert not await redis.exists(keys.user_profile(ids["user"]), keys.session(ids["voice"]))
