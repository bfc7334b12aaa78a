"""The admin JSON API: access, metrics from the counters, listings, detail, delete, recalculate."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from auth.claims import Permission
from tests.helpers import Client, ServerUnderTest, to_window_start
from tests.streams.helpers import create_stream

DAY_MS = 86_400_000
LONG_TTL_S = 400 * 86400  # tokens outlive the clock shifts of these tests
UUID_GONE = "00000000-0000-4000-8000-000000000000"


def admin_token(server: ServerUnderTest, user: str = "root") -> str:
    return server.token(user, perms=(Permission.ADMIN,), ttl_s=LONG_TTL_S)


@pytest_asyncio.fixture
async def http(server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, path: str, token: str | None, body: Any = None, **params: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, path, headers=headers, json=body, params=params or None) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def new_pattern(http: aiohttp.ClientSession) -> str:
    async with http.post("/api/sessions", json={}) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


ROUTES = [
    ("GET", "/admin/metrics", None),
    ("GET", "/admin/sessions", None),
    ("GET", f"/admin/sessions/{UUID_GONE}", None),
    ("DELETE", f"/admin/sessions/{UUID_GONE}", {"confirm": UUID_GONE}),
    ("POST", "/admin/recalculate", {}),
    ("GET", "/admin/audit", None),
    ("GET", "/admin/alerts", None),
    ("GET", "/admin/export", None),
    ("POST", "/admin/orphans/delete", {"older_than_days": 1, "dry_run": True}),
    ("GET", "/metrics", None),
]


async def test_every_admin_route_needs_a_token_with_the_admin_permission(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    session_id = await server.create_session("alice")
    user = server.token("alice", perms=(Permission.READ_ALL, Permission.UPDATE, Permission.CREATE))
    for method, path, body in ROUTES:
        status, answer = await call(http, method, path, None, body)
        assert (status, answer["error"]) == (401, "unauthorized"), (method, path)
        status, answer = await call(http, method, path, user, body)
        assert (status, answer["error"]) == (403, "forbidden"), (method, path)
    status, _ = await call(http, "DELETE", f"/admin/sessions/{session_id}", user, {"confirm": session_id})
    assert status == 403
    assert await server.services.sessions.meta(session_id) is not None  # nothing was deleted
    status, _ = await call(http, "GET", "/admin/metrics", admin_token(server))
    assert status == 200


async def test_metrics_count_sessions_per_kind_and_in_total(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    # Created today counts since 00:00 UTC and the operations per UTC month: the sessions are
    # made and counted in one day (a run at 23:59:59 made them in one and counted in the next).
    to_window_start(server.services.clock, DAY_MS // 1000)
    token = admin_token(server)
    for user in ("alice", "bob"):
        await server.create_session(user)
    await new_pattern(http)
    status, metrics = await call(http, "GET", "/admin/metrics", token)
    assert status == 200
    assert metrics["kinds"]["voice"]["sessions"] == 2
    assert metrics["kinds"]["pattern"]["sessions"] == 1
    assert metrics["total"]["sessions"] == 3
    assert metrics["total"]["created_today"] == 3
    assert metrics["total"]["active"] == 3
    assert metrics["total"]["orphaned"] == 0
    assert metrics["orphan_days"] == 90
    assert metrics["total"]["operations_this_month"]["writes"] == 3
    assert set(metrics["total"]["monthly_cost"]) == {"storage", "reads", "writes", "total"}
    assert [node["bus_live"] for node in metrics["nodes"]] == [True]
    # Seed 001's dashboard answer, beside the server's own shape: the same figures, its names.
    total, cost = metrics["total"], metrics["total"]["monthly_cost"]
    assert metrics["sessions"] == {"total": 3, "activeToday": 3, "createdToday": 3, "orphaned90Days": 0}
    assert metrics["storage"] == {"totalBytes": total["storage_bytes"], "averageBytes": total["average_bytes"]}
    assert metrics["costs"] == {
        "storageMonthly": cost["storage"],
        "estimatedReadsMonthly": cost["reads"],
        "estimatedWritesMonthly": cost["writes"],
    }


async def test_untouched_sessions_become_orphans_and_a_lookup_revives_one(
    server: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    token = admin_token(server)
    kept = await server.create_session("alice")
    await server.create_session("alice")
    server.services.clock.shift_ms = 91 * DAY_MS
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    assert (metrics["total"]["orphaned"], metrics["total"]["active"]) == (2, 0)
    assert (metrics["sessions"]["orphaned90Days"], metrics["sessions"]["activeToday"]) == (2, 0)
    # A subscription looks the session up through the kind registry: an access.
    client = Client(server.url, server.token("alice", ttl_s=LONG_TTL_S))
    clients.append(client)
    await client.connect()
    assert (await client.call("subscribe_on_session", {"session_id": kept}))["ok"] is True
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    assert (metrics["kinds"]["voice"]["orphaned"], metrics["kinds"]["voice"]["active"]) == (1, 1)
    assert metrics["total"]["created_today"] == 0
    assert metrics["total"]["storage_bytes"] > 0  # the touch measured the session


async def test_listing_pages_by_cursor_without_gaps_or_duplicates(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    made = []
    for i in range(7):
        server.services.clock.shift_ms = i * 1000
        made.append(await server.create_session("alice" if i % 2 else "bob"))
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": "3"}
        if cursor:
            params["cursor"] = cursor
        status, page = await call(http, "GET", "/admin/sessions", token, **params)
        assert status == 200, page
        seen += [row["session_id"] for row in page["sessions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    _, ascending = await call(http, "GET", "/admin/sessions", token, order="asc", limit="100")
    assert [row["session_id"] for row in ascending["sessions"]] == made
    _, bobs = await call(http, "GET", "/admin/sessions", token, owner="bob")
    assert {row["owner_id"] for row in bobs["sessions"]} == {"bob"}
    assert len(bobs["sessions"]) == 4
    row = bobs["sessions"][0]
    assert row["kind"] == "voice" and row["title"] == "test" and row["url"].endswith(row["session_id"])


async def test_an_owner_filter_finds_the_audience_sessions_of_their_streams(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """A stream's audience session is not in its owner's own list (it is a part of the stream),
    yet its row names the owner: filtered by owner and that kind, it is found."""
    token = admin_token(server)
    alices = await create_stream(server, user="alice")
    await create_stream(server, user="bob")
    _, audiences = await call(http, "GET", "/admin/sessions", token, kind="stream_audience")
    assert len(audiences["sessions"]) == 2
    _, hers = await call(http, "GET", "/admin/sessions", token, kind="stream_audience", owner="alice")
    [audience] = hers["sessions"]
    assert audience["owner_id"] == "alice"
    _, detail = await call(http, "GET", f"/admin/sessions/{audience['session_id']}", token)
    assert detail["session"]["stream_id"] == alices
    _, streams = await call(http, "GET", "/admin/sessions", token, kind="stream", owner="alice")
    assert [row["session_id"] for row in streams["sessions"]] == [alices]


async def test_an_owner_filter_lists_their_own_list_whatever_the_sort(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """Filtered by owner, the patterns the user made were never listed (a pattern's record names no
    owner: its author) and their streams' audiences came and went with the sort (audit "operator")."""
    token = admin_token(server)
    voice = await server.create_session("alice")
    stream = await create_stream(server, user="alice")
    headers = {"Authorization": f"Bearer {server.token('alice', ttl_s=LONG_TTL_S)}"}
    async with http.post("/api/sessions", json={}, headers=headers) as response:
        assert response.status == 201, await response.text()
        pattern = str((await response.json())["id"])
    await new_pattern(http)  # nobody's
    for sort in ("created", "accessed", "updated", "size", "remixes"):
        _, hers = await call(http, "GET", "/admin/sessions", token, owner="alice", sort=sort)
        listed = {row["session_id"]: row for row in hers["sessions"]}
        assert set(listed) == {voice, stream, pattern}, (sort, hers)
        assert listed[pattern]["owner_id"] == "alice" and listed[pattern]["kind"] == "pattern"


async def test_listing_filters_by_kind_state_and_creation_range(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    old_voice = await server.create_session("alice")
    server.services.clock.shift_ms = 100 * DAY_MS
    pattern = await new_pattern(http)
    _, patterns = await call(http, "GET", "/admin/sessions", token, kind="pattern")
    assert [row["session_id"] for row in patterns["sessions"]] == [pattern]
    for sort in ("created", "accessed", "updated", "size"):
        _, orphans = await call(http, "GET", "/admin/sessions", token, state="orphaned", sort=sort)
        assert [row["session_id"] for row in orphans["sessions"]] == [old_voice], sort
        assert orphans["sessions"][0]["orphaned"] is True
        _, active = await call(http, "GET", "/admin/sessions", token, state="active", sort=sort)
        assert [row["session_id"] for row in active["sessions"]] == [pattern], sort
    # Seed 001's own link: /admin/sessions?filter=orphaned, the same filter under its name.
    status, by_seed = await call(http, "GET", "/admin/sessions", token, filter="orphaned")
    assert (status, [row["session_id"] for row in by_seed["sessions"]]) == (200, [old_voice]), by_seed
    _, by_seed = await call(http, "GET", "/admin/sessions", token, filter="active")
    assert [row["session_id"] for row in by_seed["sessions"]] == [pattern]
    status, both = await call(http, "GET", "/admin/sessions", token, filter="active", state="orphaned")
    assert (status, both["error"]) == (400, "invalid_payload")
    now = server.services.clock.now_ms()
    _, recent = await call(http, "GET", "/admin/sessions", token, created_from=str(now - DAY_MS))
    assert [row["session_id"] for row in recent["sessions"]] == [pattern]
    _, early = await call(http, "GET", "/admin/sessions", token, created_to=str(now - DAY_MS))
    assert [row["session_id"] for row in early["sessions"]] == [old_voice]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"sort": "name"},
        {"order": "sideways"},
        {"kind": "Voice!"},
        {"kind": "podcast"},  # well-formed, but not a kind this server has
        {"state": "dead"},
        {"owner": "a b"},
        {"cursor": "nonsense"},
        {"cursor": "nan:1"},
        {"created_from": "5", "created_to": "4"},
        {"created_from": "9" * 40},
        {"kind": "x" * 5000},
    ],
)
async def test_bad_listing_queries_are_refused(
    server: ServerUnderTest, http: aiohttp.ClientSession, params: dict[str, str]
) -> None:
    status, answer = await call(http, "GET", "/admin/sessions", admin_token(server), **params)
    assert (status, answer["error"]) == (400, "invalid_payload"), answer


async def test_a_repeated_query_parameter_is_refused(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"Bearer {admin_token(server)}"}
    async with http.get("/admin/sessions?limit=1&limit=2", headers=headers) as response:
        assert response.status == 400
    # A parameter the route does not take is ignored, as on every route (PROTOCOL, Errors).
    async with http.get("/admin/metrics?x=1", headers=headers) as response:
        assert response.status == 200


async def test_detail_shows_the_record_its_events_and_lineage(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    parent = await new_pattern(http)
    async with http.post(f"/api/sessions/{parent}/remix", json={}) as response:
        assert response.status == 201, await response.text()
        child = str((await response.json())["id"])
    status, detail = await call(http, "GET", f"/admin/sessions/{child}", token)
    assert status == 200, detail
    assert detail["session"]["kind"] == "pattern"
    assert detail["remix"]["ancestors"] == [{"session_id": parent, "name": "", "exists": "yes"}]
    assert detail["offset"] == len(detail["events"]) >= 1
    assert detail["events"][0]["type"] == "pattern_created"
    _, parent_detail = await call(http, "GET", f"/admin/sessions/{parent}", token, events="0")
    assert parent_detail["remix"]["remix_count"] == 1 and parent_detail["events"] == []
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    assert metrics["total"]["deepest_remix"] == {"depth": 0, "as_of": None}
    _, drift = await call(http, "POST", "/admin/recalculate", token)
    assert drift["deepest_remix"] == 1
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    assert metrics["total"]["deepest_remix"]["depth"] == 1
    assert (await call(http, "GET", f"/admin/sessions/{UUID_GONE}", token))[0] == 404
    assert (await call(http, "GET", "/admin/sessions/not-a-uuid", token))[0] == 400
    assert (await call(http, "GET", f"/admin/sessions/{child}", token, events="5000"))[0] == 400


async def test_delete_needs_the_id_repeated_then_is_an_event_and_audited(
    server: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    token = admin_token(server, "operator-1")
    session_id = await server.create_session("alice")
    other = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    for body in (None, {}, {"confirm": other}, {"confirm": 5}, {"confirm": session_id, "extra": 1}, [session_id]):
        status, answer = await call(http, "DELETE", f"/admin/sessions/{session_id}", token, body)
        assert status in (400, 412), (body, answer)
    assert await server.services.sessions.meta(session_id) is not None
    status, answer = await call(http, "DELETE", f"/admin/sessions/{session_id}", token, {"confirm": session_id})
    assert status == 200, answer
    assert answer["kind"] == "voice"
    await watcher.wait_for(lambda: bool(watcher.named("session_deleted")))
    assert watcher.named("session_deleted")[0]["offset"] == answer["offset"]
    assert await server.services.redis.exists(server.services.keys.session(session_id)) == 0
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    assert metrics["total"]["sessions"] == 1
    status, again = await call(http, "DELETE", f"/admin/sessions/{session_id}", token, {"confirm": session_id})
    assert (status, again["error"]) == (404, "session_not_found")
    _, audit = await call(http, "GET", "/admin/audit", token)
    entry = audit["entries"][0]
    assert (entry["actor"], entry["action"], entry["target"]) == ("operator-1", "delete_session", session_id)
    assert entry["detail"] == {"kind": "voice", "owner_id": "alice"}
    assert (await watcher.call("subscribe_on_session", {"session_id": other}))["ok"] is True  # still usable


async def test_recalculate_rebuilds_the_counters_and_reports_the_drift(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    ids = [await server.create_session("alice") for _ in range(3)]
    await new_pattern(http)
    redis, keys = server.services.redis, server.services.keys
    await redis.hdel(keys.admin_kind_of(), ids[0])  # an index entry lost
    await redis.zrem(keys.admin_created("voice"), ids[0])
    await redis.zrem(keys.admin_created("*"), ids[0])
    await redis.hset(keys.admin_kind_of(), UUID_GONE, "voice")  # one whose session is gone
    await redis.zadd(keys.admin_created("voice"), {UUID_GONE: 1})
    await redis.hincrby(keys.admin_bytes(), "voice", 12345)  # totals that drifted
    status, drift = await call(http, "POST", "/admin/recalculate", token)
    assert status == 200, drift
    assert (drift["sessions"], drift["added"], drift["removed"], drift["drift"]) == (4, 1, 1, True)
    assert drift["bytes_before"]["voice"] != drift["bytes_after"]["voice"]
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    assert metrics["kinds"]["voice"]["sessions"] == 3 and metrics["total"]["sessions"] == 4
    sizes = await redis.zrange(keys.admin_size(), 0, -1, withscores=True)
    assert int(await redis.hget(keys.admin_bytes(), "voice")) == sum(int(score) for sid, score in sizes if sid in ids)
    _, second = await call(http, "POST", "/admin/recalculate", token)
    assert second["drift"] is False, second
    await redis.hincrby(keys.admin_bytes(), "pattern", -7)  # only a byte total drifted
    _, third = await call(http, "POST", "/admin/recalculate", token)
    assert (third["drift"], third["added"], third["removed"], third["corrected"]) == (True, 0, 0, 0), third
    _, audit = await call(http, "GET", "/admin/audit", token, limit="1")
    assert audit["entries"][0]["action"] == "recalculate"


async def test_a_kind_that_indexes_without_naming_itself_is_counted_at_first_lookup(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    services = server.services
    session_id = "11111111-1111-4111-8111-111111111111"
    now = services.clock.now_ms()
    await services.sessions.index(session_id=session_id, owner_id="alice", created_ms=now)
    await services.redis.hset(
        services.keys.session(session_id),
        mapping={"id": session_id, "kind": "later", "owner_id": "alice", "created_at": now},
    )
    _, before = await call(http, "GET", "/admin/metrics", admin_token(server))
    assert before["total"]["sessions"] == 0
    assert await services.sessions.meta(session_id) is not None
    _, after = await call(http, "GET", "/admin/metrics", admin_token(server))
    assert after["total"]["sessions"] == 1 and after["kinds"]["later"]["sessions"] == 1


async def test_paging_through_sessions_created_in_the_same_millisecond(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    made = {await server.create_session("alice") for _ in range(8)}
    redis, keys = server.services.redis, server.services.keys
    await redis.zadd(keys.admin_created("*"), dict.fromkeys(made, 1_700_000_000_000))  # one tie for all
    for order in ("desc", "asc"):
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(10):
            params: dict[str, Any] = {"limit": "3", "order": order, **({"cursor": cursor} if cursor else {})}
            _, page = await call(http, "GET", "/admin/sessions", token, **params)
            seen += [row["session_id"] for row in page["sessions"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(made), order


async def test_every_kind_made_through_its_api_is_in_the_admin_indexes_at_once(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    # Nothing looked up yet: an operator sees each new session now, and a recalculation of a
    # healthy system finds nothing to correct.
    user = {"Authorization": f"Bearer {server.token('alice')}"}
    async with http.post("/voicebot/create_session", json={}, headers=user) as response:
        assert response.status == 201
    async with http.post("/api/streams", json={"title": "live"}, headers=user) as response:
        assert response.status == 201, await response.text()
    await new_pattern(http)
    token = admin_token(server)
    _, listed = await call(http, "GET", "/admin/sessions", token)
    kinds = sorted(row["kind"] for row in listed["sessions"])
    assert kinds == sorted(["voice", "stream", "stream_audience", "pattern"]), listed
    _, drift = await call(http, "POST", "/admin/recalculate", token)
    assert (drift["added"], drift["drift"]) == (0, False), drift


async def test_a_node_whose_heartbeat_stopped_reports_no_clients(server: ServerUnderTest) -> None:
    """A node killed left its last heartbeat, listed (stale) for an hour with the clients it had
    then: the nodes' clients added up to more than were connected once those moved elsewhere."""
    keys, redis = server.services.keys, server.services.redis
    old_ms = server.services.clock.now_ms() - 10 * 60_000
    beat = {"bus_live": True, "ts": old_ms, "pid": 1, "clients": 255, "subscriptions": 1250}
    await redis.hset(keys.admin_nodes(), "killed:1:abc", json.dumps(beat))
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {admin_token(server)}"}
        async with http.get(server.url + "/admin/metrics", headers=headers) as answer:
            nodes = {node["node"]: node for node in (await answer.json())["nodes"]}
    killed = nodes.pop("killed:1:abc")
    assert killed["stale"] is True and (killed["clients"], killed["subscriptions"]) == (None, None)
    [live] = nodes.values()
    assert live["stale"] is False and isinstance(live["clients"], int)
