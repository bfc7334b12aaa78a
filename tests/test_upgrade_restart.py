"""An operator stops a release and starts HEAD on the same Redis and data folder: people come
back with the cookies, links and tabs they had, and find everything they made as it was.

Each release of tests/upgrade_world.RELEASES (the previous one, and one two days older) is built
in a worktree, makes one of everything through its own API, is stopped (SIGTERM), and HEAD is
started in its place. The tests of one release share that upgraded server, in file order: first
the reads (as the old server answered them), then the writes on old records.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser as PlaywrightBrowser
from playwright.async_api import expect
from redis.asyncio import Redis

from storage.keys import Keys
from tests.browser import Tab
from tests.helpers import Client, RedisProcess
from tests.journeys import PHONE, fits, readable
from tests.upgrade_world import (
    HEAD_ROOT,
    VOLATILE,
    World,
    call,
    differences,
    make_everything,
    mint_accounts,
    ok,
    release,  # noqa: F401 - the fixture
    serving,
    upload_chunk,
)

pytestmark = pytest.mark.timeout(240)  # two `serve` children start (6-8 s each on a busy machine)


@dataclass
class Upgraded:
    """HEAD serving what a release made, and what the release's clients last saw."""

    base: str
    world: World
    redis: Redis
    resume: dict[str, Any]  # the ack of a stream subscriber's last subscribe before the stop
    seen: list[str]  # the events that subscriber received before the stop


@pytest_asyncio.fixture(scope="module")
async def upgraded(release: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Upgraded]:  # noqa: F811
    folder = tmp_path_factory.mktemp(f"upgrade-{release.name}")
    redis_process = RedisProcess(folder / "redis")
    redis_process.start()
    raw = Redis.from_url(redis_process.url, decode_responses=True)
    accounts = asyncio.create_task(mint_accounts(release))  # minted while the old release starts
    try:
        async with serving(release, folder / "data", redis_process.url) as old:
            world = await make_everything(old, release, await accounts)
            watcher = Client(old, world.guest.token)
            await watcher.connect()
            resume = await watcher.call("subscribe_on_session", {"session_id": world.stream})
            assert resume["ok"], resume
        seen = [name for name, _ in watcher.events]
        await watcher.close()
        # The sweeper ticks at once: an old guest's things must survive its first look.
        async with serving(HEAD_ROOT, folder / "data", redis_process.url, SESSIONHUB_CLEANUP_RETRY_S="0.2") as base:
            yield Upgraded(base, world, raw, resume, seen)
    finally:
        await asyncio.gather(accounts, return_exceptions=True)  # its children end either way
        await raw.aclose()
        redis_process.stop()


def same(name: str, old: Any, new: Any, volatile: set[str] | frozenset[str] = VOLATILE) -> None:
    found = differences(old, new, name, volatile)
    assert not found, "\n".join(found)


async def test_the_guest_comes_back_with_its_cookies_on_both_devices(upgraded: Upgraded) -> None:
    base, world = upgraded.base, upgraded.world
    for device in (world.guest, world.linked):
        before = device.refresh_cookie()
        answer = ok(await device.call(base, "POST", "/api/auth/refresh", token="", page=True))
        assert answer["user_id"] == world.guest_id and answer["guest"] is True
        assert device.refresh_cookie() not in ("", before), "the cookie rotates on HEAD as before"
        device.token = answer["token"]
    me = ok(await world.guest.call(base, "GET", "/api/auth/me"))
    assert (me["user_id"], me["name"], len(me["devices"])) == (world.guest_id, "Gwen", 2)
    # The account token an operator issued before the upgrade still works.
    assert ok(await call(base, "GET", "/api/auth/me", world.account))["user_id"] == "bob"


async def test_everything_reads_back_as_the_old_server_answered_it(upgraded: Upgraded) -> None:
    base, world = upgraded.base, upgraded.world
    bob, guest = world.account, world.guest
    # First: every read below is an access, which the admin index records.
    admin = ok(await call(base, "GET", "/admin/sessions", world.admin))
    # One change on purpose: a pattern's row names its author as its owner (the old server said
    # "", and an owner filter never found a user's patterns: audit "operator"). The guest made
    # the pattern; the remix was made with no token, by nobody.
    expected = copy.deepcopy(world.admin_sessions)
    for row in expected["sessions"]:
        if row["session_id"] == world.pattern:
            assert row["owner_id"] == "", row
            row["owner_id"] = world.guest_id
    same("admin", expected, admin, VOLATILE | {"accessed_at"})
    for session_id, record in world.voice_records.items():
        same("voice", record, ok(await call(base, "GET", f"/voicebot/sessions/{session_id}", bob)))
        listing = ok(await call(base, "GET", f"/voicebot/sessions/{session_id}/chunks", bob))
        same("chunks", world.chunks[session_id], listing["chunks"])
        for chunk in listing["chunks"]:
            assert ok(await call(base, "GET", chunk["audio_url"])) == world.audio[chunk["sha256"]]
    active = ok(await call(base, "POST", "/voicebot/active_session", bob))["active_session"]
    assert active["session_id"] == world.voice_open

    same("pattern", world.pattern_get, ok(await call(base, "GET", f"/api/sessions/{world.pattern}")))
    same("remix", world.remix_get, ok(await call(base, "GET", f"/api/sessions/{world.remix}")))

    path = f"/api/streams/{world.stream}"
    same("stream", world.stream_record, ok(await guest.call(base, "GET", path)))
    same("clips", world.review, ok(await guest.call(base, "GET", f"{path}/clips")))
    same("moments", world.moments, ok(await guest.call(base, "GET", f"{path}/moments")))
    mine = ok(await call(base, "GET", f"{path}/clips/mine", bob))
    assert [clip["note"] for clip in mine["clips"]] == ["<b>boss</b> 🎉", "the skip"]
    if world.mine:  # the older release had no "your clips"
        same("mine", world.mine, mine)
    # The paged review (new since the older release) builds its index from the old clips.
    review = ok(await guest.call(base, "GET", f"{path}/review"))
    assert [s["clip_count"] for s in review["segments"]] == [1, 2] and review["clip_count"] == 3
    page = ok(await guest.call(base, "GET", f"{path}/review/clips?segment=2"))
    assert sorted(c["note"] for c in page["clips"]) == ["<b>boss</b> 🎉", "own"]

    history = ok(await guest.call(base, "GET", "/api/listening/sessions"))["sessions"]
    same("history", world.history_sessions, history)
    same("stats", world.stats, ok(await guest.call(base, "GET", world.stats_query)), VOLATILE | {"today"})
    same("me/sessions", world.me_sessions, ok(await guest.call(base, "GET", "/api/me/sessions?limit=50")))


async def test_the_old_guest_is_listed_by_its_last_visit_and_keeps_everything(upgraded: Upgraded) -> None:
    """HEAD's guest sweeper lists the guests that came to own something before it (kept for good
    then) by their devices' last use; a guest seen today is kept with all it made."""
    keys, raw, world = Keys("sh"), upgraded.redis, upgraded.world
    deadline = time.monotonic() + 20
    while await raw.get(keys.guests_backfill()) != "done":
        assert time.monotonic() < deadline, "the sweeper never listed the old guests"
        await asyncio.sleep(0.05)  # polled within the bound above
    listed_ms = await raw.zscore(keys.guests_owning(), world.guest_id)
    assert listed_ms is not None and listed_ms > time.time() * 1000 - 600_000
    for session_id in (world.stream, world.history):
        assert await raw.exists(keys.session(session_id)), session_id


async def test_new_writes_on_old_records_work_and_old_subscribers_resume(upgraded: Upgraded) -> None:
    base, world = upgraded.base, upgraded.world
    bob, guest = world.account, world.guest
    path = f"/api/streams/{world.stream}"
    added = ok(await call(base, "POST", f"{path}/clips", bob, json={"note": "after the upgrade"}), 201)
    ok(await guest.call(base, "PATCH", f"{path}/clips/{added['clip']['clip_id']}", json={"clipped": True}))
    counts = ok(await guest.call(base, "GET", path))
    assert (counts["clip_count"], counts["clipped_count"]) == (4, 2)

    # The dashboard that was open before the stop comes back with its (epoch, offset, last_id).
    resume = upgraded.resume
    position = {"session_id": world.stream, "epoch": resume["epoch"], "offset": resume["offset"]}
    if resume.get("last_id"):
        position["last_id"] = resume["last_id"]
    dashboard = Client(base, guest.token)
    await dashboard.connect()
    try:
        ack = await dashboard.call("subscribe_on_session", position)
        assert ack["ok"] and ack["recovered"] is True and ack["missed"] == 2, ack
        assert [name for name, _ in dashboard.events] == ["clip_added", "clip_updated"]
        for session_id, (epoch, offset, _) in world.positions.items():
            if session_id in world.voice_records:
                continue  # bob's: below
            ack = await dashboard.call(
                "subscribe_on_session", {"session_id": session_id, "epoch": epoch, "offset": offset}
            )
            assert ack["ok"] and ack["recovered"] is True, ack
    finally:
        await dashboard.close()

    player = Client(base, guest.token)
    await player.connect()
    try:
        await player.call("subscribe_on_session", {"session_id": world.pattern})
        op = {"type": "set_step", "trackId": "hat", "step": 0, "on": True}
        ack = await player.call(
            "pattern_op", {"session_id": world.pattern, "seq": 1, "client_id": "tab-two-22", "op": op}
        )
        assert ack["ok"] and ack["duplicate"] is False, ack
        # The old tab's op sent again (its ack lost in the stop) is still known as applied.
        again = {"type": "set_step", "trackId": "kick", "step": 2, "on": True}
        ack = await player.call(
            "pattern_op", {"session_id": world.pattern, "seq": 1, "client_id": "tab-one-1", "op": again}
        )
        assert ack["ok"] and ack["duplicate"] is True, ack
    finally:
        await player.close()
    steps = ok(await call(base, "GET", f"/api/sessions/{world.pattern}"))["state"]["tracks"]
    assert [steps[0]["steps"][2], steps[1]["steps"][0]] == [True, True]

    recorder = Client(base, bob)
    await recorder.connect()
    try:
        epoch, offset, _ = world.positions[world.voice_open]
        ack = await recorder.call(
            "subscribe_on_session", {"session_id": world.voice_open, "epoch": epoch, "offset": offset}
        )
        assert ack["ok"] and ack["recovered"] is True, ack
        done = await recorder.call("session_done", {"session_id": world.voice_open, "request_id": "press-after-1"})
        assert done["ok"] and done["done_count"] == 1 and done["active_session_cleared"] is True, done
        await recorder.wait_for(
            lambda: any(e["data"]["status"] == "succeeded" for e in recorder.named("job_result")), 20
        )
    finally:
        await recorder.close()
    record = ok(await call(base, "GET", f"/voicebot/sessions/{world.voice_open}", bob))
    assert (record["status"], record["chunk_count"]) == ("closed", 1)

    # The song left playing on the laptop before the stop is paused after it; the book plays on.
    pause = {"item_id": "song-2", "status": "paused", "device_id": "laptop", "position_s": 9}
    assert ok(await guest.call(base, "POST", "/api/listening/report", json=pause))["action"] == "finalized"
    play = {"item_id": "book-1", "status": "playing", "device_id": "phone", "position_s": 9}
    assert ok(await guest.call(base, "POST", "/api/listening/report", json=play))["action"] == "started"
    stats = ok(await guest.call(base, "GET", world.stats_query))
    assert stats["count"] == world.stats["count"] + 1 and stats["total_ms"] > world.stats["total_ms"]


async def test_retries_sent_across_the_stop_are_answered_as_the_first_try(upgraded: Upgraded) -> None:
    """A retry whose first try the old server ran (its answer lost in the stop) changes nothing
    more on HEAD: a clip's submission id, a listening upload's client id, the same audio."""
    base, world = upgraded.base, upgraded.world
    path = f"/api/streams/{world.stream}"
    before = ok(await world.guest.call(base, "GET", path))["clip_count"]
    retry = ok(
        await call(
            base, "POST", f"{path}/clips", world.account, json={"note": "the skip", "submission_id": "clip-aaaa-1"}
        )
    )
    assert retry["created"] is False and retry["clip"]["note"] == "the skip"
    assert ok(await world.guest.call(base, "GET", path))["clip_count"] == before
    upload = ok(await world.guest.call(base, "POST", "/api/listening/upload", json=world.upload))
    assert upload["duplicate"] is True
    chunk = world.chunks[world.voice_done][0]
    form_answer = ok(await upload_chunk(base, world.account, world.voice_done, world.audio[chunk["sha256"]]), 200)
    assert form_answer["duplicate"] is True and form_answer["chunk"]["chunk_id"] == chunk["chunk_id"]


async def test_answers_on_old_records_have_the_shape_of_answers_on_new_ones(upgraded: Upgraded) -> None:
    """Pages are written against HEAD's answers: an old record must not lack a field (or give it
    another type) that the same answer has for a record HEAD made."""
    base = upgraded.base
    fresh = await make_everything(base, HEAD_ROOT)
    old = upgraded.world
    for name, path in _reads(old).items():
        old_answer, new_answer = await _read(base, old, path), await _read(base, fresh, _reads(fresh)[name])
        old_shape, new_shape = shape(old_answer), shape(new_answer)
        # A field a record keeps from an event that happened before the upgrade (a voice
        # session's last_job: its job ran on the old code) is null there, as the docs say of a
        # record before its first such event: the field is there, what is under it is not.
        missing = sorted(
            p
            for p in set(new_shape) - set(old_shape)
            if not any(p.startswith(f"{field}.") and field in old_shape for field in NULL_ON_OLD_RECORDS)
        )
        retyped = sorted(
            p
            for p in old_shape.keys() & new_shape.keys()
            if old_shape[p] and new_shape[p] and old_shape[p] != new_shape[p]
        )
        assert not missing and not retyped, f"{name}: lacks {missing[:6]}, types differ at {retyped[:6]}"


def _reads(world: World) -> dict[str, tuple[str, str]]:
    stream = f"/api/streams/{world.stream}"
    return {
        "voice": ("bob", f"/voicebot/sessions/{world.voice_done}"),
        "chunks": ("bob", f"/voicebot/sessions/{world.voice_done}/chunks"),
        "voice list": ("bob", "/voicebot/sessions"),
        "stream": ("guest", stream),
        "clips": ("guest", f"{stream}/clips"),
        "moments": ("guest", f"{stream}/moments"),
        "review": ("guest", f"{stream}/review"),
        "review page": ("guest", f"{stream}/review/clips?segment=2"),
        "mine": ("bob", f"{stream}/clips/mine"),
        "listening": ("guest", "/api/listening"),
        "listening sessions": ("guest", "/api/listening/sessions"),
        "stats": ("guest", "/api/listening/stats"),
        "me": ("guest", "/api/auth/me"),
        "me sessions": ("guest", "/api/me/sessions"),
        "admin session": ("admin", f"/admin/sessions/{world.stream}"),
    }


async def _read(base: str, world: World, who_path: tuple[str, str]) -> Any:
    who, path = who_path
    token = {"bob": world.account, "guest": world.guest.token, "admin": world.admin}[who]
    return ok(await call(base, "GET", path, token))


# Fields of an answer kept from an event after it was made (see the shape test): null on a record
# whose event came before the upgrade.
NULL_ON_OLD_RECORDS = (".last_job",)


def shape(value: Any, where: str = "", found: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Every field path of a JSON value, with the types it holds there but null (list items merged)."""
    found = {} if found is None else found
    if isinstance(value, dict):
        for key, item in value.items():
            types = found.setdefault(f"{where}.{key}", set())
            if item is not None:
                types.add(type(item).__name__)
            shape(item, f"{where}.{key}", found)
    elif isinstance(value, list):
        for item in value:
            shape(item, f"{where}[]", found)
    return found


async def test_the_pages_show_what_people_made_before_the_upgrade(
    upgraded: Upgraded, browser: PlaywrightBrowser
) -> None:
    """The guest's phone comes back with its refresh cookie (its page storage as it was: the
    cookie alone), bob's laptop with its token: every page shows the old records, escaped, with
    no error, within 390 px."""
    base, world = upgraded.base, upgraded.world
    phone = await browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    cookie = {
        "name": "sessionhub_refresh",
        "value": world.guest.refresh_cookie(),
        "domain": "127.0.0.1",
        "path": "/api/auth",
    }
    await phone.add_cookies([{**cookie, "httpOnly": True, "sameSite": "Strict"}])
    laptop = await browser.new_context()
    tabs = [Tab(page=await phone.new_page(), base_url=base), Tab(page=await laptop.new_page(), base_url=base)]
    await tabs[1].use_token(world.account)
    try:
        pages = [
            (tabs[0], f"/streams/{world.stream}", ["Speedrun", "<b>boss</b> 🎉", "the skip"]),
            (tabs[0], f"/s/{world.pattern}", ["1 remix"]),
            (tabs[0], f"/s/{world.remix}", ["Remixed from"]),
            (tabs[0], "/history", ["Dune"]),
            (tabs[0], "/", ["Speedrun"]),
            (tabs[1], f"/session/{world.voice_done}", ["Standup"]),
            (tabs[1], f"/watch/{world.stream}", ["Speedrun"]),
        ]
        for tab, path, texts in pages:
            page = await tab.open(path)
            for text in texts:
                await expect(page.locator("body")).to_contain_text(text)
            await readable(page)
            if path.startswith("/s/"):  # the old live op's step (Kick's third) is on in both
                step = page.get_by_role("button", name="Kick step 3", exact=True)
                await expect(step).to_have_attribute("aria-pressed", "true")
            if path == f"/s/{world.pattern}":
                await expect(page.locator("#pattern-name")).to_have_value("Night groove")
            if path == f"/s/{world.remix}":
                await expect(page.locator("#parent-link")).to_have_attribute("href", f"/s/{world.pattern}")
            if tab is tabs[0]:
                await fits(page)
        assert ok(await call(base, "GET", "/api/auth/me", world.guest.token))["user_id"] == world.guest_id
    finally:
        await phone.close()
        await laptop.close()
    errors = [line for tab in tabs for line in tab.errors]
    assert not errors, "\n".join(errors + [line for tab in tabs for line in tab.console])
