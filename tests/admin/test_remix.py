"""Remix counts and trees on the admin side: the remix-count sort, the children index, recalculation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from storage.patterns.remix_tree import RemixTree, TreeBounds
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.admin.test_http import UUID_GONE, admin_token, call, new_pattern


@pytest_asyncio.fixture
async def server(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose pattern creation limit leaves room for trees of remixes."""
    srv = await start_server(redis_process.url, tmp_path, patterns_creates_per_min=1000)
    yield srv
    await srv.stop()


@pytest_asyncio.fixture
async def http(server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def remix(http: aiohttp.ClientSession, parent: str, action: str = "remix") -> str:
    async with http.post(f"/api/sessions/{parent}/{action}", json={}) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


async def rename(http: aiohttp.ClientSession, session_id: str, name: str) -> None:
    async with http.patch(f"/api/sessions/{session_id}", json={"name": name}) as response:
        assert response.status == 200, await response.text()


async def listing(http: aiohttp.ClientSession, token: str, **params: str) -> dict[str, Any]:
    status, page = await call(http, "GET", "/admin/sessions", token, **params)
    assert status == 200, page
    return dict(page)


async def test_sessions_sort_by_remix_count_from_an_index(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    token = admin_token(server)
    popular, liked, plain = await new_pattern(http), await new_pattern(http), await new_pattern(http)
    voice = await server.create_session("alice")
    remixes = [await remix(http, popular) for _ in range(3)] + [await remix(http, liked)]
    first = await listing(http, token, sort="remixes", limit="2")
    assert [(row["session_id"], row["remix_count"]) for row in first["sessions"]] == [(popular, 3), (liked, 1)]
    assert first["scanned"] == 2  # read from the index, not from every session
    rest = await listing(http, token, sort="remixes", limit="100", cursor=first["next_cursor"])
    assert {row["session_id"] for row in rest["sessions"]} == {plain, voice, *remixes}
    assert {row["remix_count"] for row in rest["sessions"]} == {0}
    ascending = await listing(http, token, sort="remixes", order="asc", limit="100")
    assert [row["session_id"] for row in ascending["sessions"]][-2:] == [liked, popular]
    patterns_only = await listing(http, token, sort="remixes", kind="voice")
    assert [row["session_id"] for row in patterns_only["sessions"]] == [voice]
    redis, keys = server.services.redis, server.services.keys
    assert await redis.zscore(keys.admin_remixes(), popular) == 3


async def test_deleting_a_session_drops_it_from_the_remix_index_and_its_parents_children(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    parent = await new_pattern(http)
    kept, doomed = await remix(http, parent), await remix(http, parent)
    async with http.delete(f"/api/sessions/{doomed}") as response:
        assert response.status == 204
    redis, keys = server.services.redis, server.services.keys
    assert await redis.zrange(keys.remix_children(parent), 0, -1) == [kept]
    assert await redis.zscore(keys.admin_remixes(), doomed) is None
    status, _ = await call(http, "DELETE", f"/admin/sessions/{parent}", token, {"confirm": parent})
    assert status == 200
    assert await redis.exists(keys.remix_children(parent)) == 0
    assert await redis.zscore(keys.admin_remixes(), parent) is None
    everything = await listing(http, token, sort="remixes", limit="100")
    assert [row["session_id"] for row in everything["sessions"]] == [kept]


async def test_the_detail_shows_the_remix_tree_both_ways(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    token = admin_token(server)
    root = await new_pattern(http)
    await rename(http, root, "Funky Beat")
    first, second = await remix(http, root), await remix(http, root)
    grandchild = await remix(http, first)
    published = await remix(http, root, "publish")
    status, detail = await call(http, "GET", f"/admin/sessions/{root}", token, events="0")
    assert status == 200, detail
    tree = detail["remix"]
    assert (tree["remix_count"], tree["ancestors"]) == (2, [])
    assert [node["session_id"] for node in tree["descendants"]["children"]] == [first, second, published]
    assert tree["descendants"]["more"] == 0
    top = tree["descendants"]["children"][0]
    # A remix starts unnamed (as Keyboardia's do); a published copy keeps its source's name.
    assert (top["name"], top["remix_count"], top["immutable"], top["more"]) == ("", 1, False, 0)
    assert tree["descendants"]["children"][2]["name"] == "Funky Beat"
    assert [node["session_id"] for node in top["children"]] == [grandchild]
    assert tree["descendants"]["children"][2]["immutable"] is True
    _, below = await call(http, "GET", f"/admin/sessions/{grandchild}", token, events="0")
    assert [a["session_id"] for a in below["remix"]["ancestors"]] == [first, root]
    assert below["remix"]["descendants"] == {"children": [], "more": 0}


async def test_descendants_are_bounded_in_depth_and_width_with_a_count_of_the_rest(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    root = await new_pattern(http)
    children = [await remix(http, root) for _ in range(4)]
    chain = [children[0]]
    for _ in range(3):
        chain.append(await remix(http, chain[-1]))
    redis, keys = server.services.redis, server.services.keys
    tree_of = RemixTree(redis=redis, keys=keys).descendants
    await redis.zadd(keys.remix_children(root), {UUID_GONE: 1})  # left by a crash: neither shown nor counted
    tree = await tree_of(root, TreeBounds(depth=2, width=5, nodes=100))
    assert ([node["session_id"] for node in tree["children"]], tree["more"]) == (children, 0)
    level_two = tree["children"][0]["children"]
    assert [node["session_id"] for node in level_two] == [chain[1]]
    assert level_two[0]["children"] == [] and level_two[0]["more"] == 1  # chain[2] lies below the bound
    await redis.zrem(keys.remix_children(root), UUID_GONE)
    narrow = await tree_of(root, TreeBounds(depth=2, width=2, nodes=100))
    assert ([node["session_id"] for node in narrow["children"]], narrow["more"]) == (children[:2], 2)
    small = await tree_of(root, TreeBounds(depth=4, width=10, nodes=3))
    assert [node["session_id"] for node in small["children"]] == children[:3]
    assert small["more"] == 1


async def test_recalculate_rebuilds_the_remix_index_and_children_and_reports_the_drift(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    popular, other = await new_pattern(http), await new_pattern(http)
    made = [await remix(http, popular) for _ in range(2)]
    redis, keys = server.services.redis, server.services.keys
    await redis.zrem(keys.admin_remixes(), popular)  # an index entry lost
    await redis.zadd(keys.admin_remixes(), {other: 99})  # one that drifted
    await redis.zrem(keys.remix_children(popular), made[0])  # a child missing
    await redis.zadd(keys.remix_children(other), {UUID_GONE: 1})  # a child that is gone
    status, drift = await call(http, "POST", "/admin/recalculate", token)
    assert status == 200, drift
    assert (drift["remixes_corrected"], drift["children_corrected"], drift["drift"]) == (2, 2, True), drift
    assert drift["added"] == drift["removed"] == drift["corrected"] == 0
    page = await listing(http, token, sort="remixes", limit="1")
    assert [(row["session_id"], row["remix_count"]) for row in page["sessions"]] == [(popular, 2)]
    assert await redis.zrange(keys.remix_children(popular), 0, -1) == made
    assert await redis.exists(keys.remix_children(other)) == 0
    _, second = await call(http, "POST", "/admin/recalculate", token)
    assert (second["remixes_corrected"], second["children_corrected"], second["drift"]) == (0, 0, False), second
