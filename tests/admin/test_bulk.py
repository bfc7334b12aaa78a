"""Bulk admin actions (export, deleting orphans), alerts and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from tests.helpers import Client, ServerUnderTest
from tests.admin.test_http import DAY_MS, LONG_TTL_S, admin_token, call

HOUR_MS = 3_600_000
TRACK = {"id": "kick", "name": "Kick", "sampleId": "kick", "steps": [True] + [False] * 15, "volume": 0.8}


@pytest_asyncio.fixture
async def http(server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def orphans_and_fresh(server: ServerUnderTest) -> tuple[list[str], list[str]]:
    """Two sessions left alone for 100 days, then one created 'now'."""
    old = [await server.create_session("alice"), await server.create_session("bob")]
    server.services.clock.shift_ms = 100 * DAY_MS
    fresh = [await server.create_session("alice")]
    return old, fresh


async def export_lines(http: aiohttp.ClientSession, token: str, **params: str) -> tuple[dict[str, str], list[Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get("/admin/export", headers=headers, params=params) as response:
        assert response.status == 200, await response.text()
        text = await response.text()
        return dict(response.headers), [json.loads(line) for line in text.splitlines()]


async def test_export_streams_every_session_or_exactly_the_orphans(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    old, fresh = await orphans_and_fresh(server)
    headers, lines = await export_lines(http, token, scope="orphans")
    assert headers["Content-Disposition"] == 'attachment; filename="sessionhub-orphans.jsonl"'
    assert lines[0]["export"] == "orphans" and lines[0]["total"] == 2
    assert sorted(line["session_id"] for line in lines[1:]) == sorted(old)
    assert all(line["kind"] == line["record"]["kind"] == "voice" for line in lines[1:])
    _, everything = await export_lines(http, token)
    assert sorted(line["session_id"] for line in everything[1:]) == sorted(old + fresh)
    # An export reads the sessions, it does not use them: the orphans stay orphans.
    _, again = await export_lines(http, token, scope="orphans")
    assert sorted(line["session_id"] for line in again[1:]) == sorted(old)
    status, answer = await call(http, "GET", "/admin/export", token, scope="some")
    assert (status, answer["error"]) == (400, "invalid_payload")


async def test_an_export_holds_each_session_as_its_api_shows_it_beside_its_stored_fields(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """Seed 001's "Export all sessions (JSON)": a pattern's whole state as one document, typed,
    as GET /api/sessions/{id} answers it, not only its stored hash (every value a string, the
    state split per field)."""
    token = admin_token(server)
    body = {"state": {"tempo": 133, "swing": 12, "tracks": [TRACK]}}
    async with http.post("/api/sessions", json=body) as response:
        assert response.status == 201, await response.text()
        pattern = (await response.json())["id"]
    async with http.get(f"/api/sessions/{pattern}") as response:
        shown = await response.json()
    voice = await server.create_session("alice")
    _, before = await call(http, "GET", f"/admin/sessions/{pattern}", token)
    server.services.clock.shift_ms = DAY_MS
    _, lines = await export_lines(http, token)
    by_id = {line["session_id"]: line for line in lines[1:]}
    exported = by_id[pattern]
    assert exported["kind"] == "pattern" and exported["record"]["kind"] == "pattern"
    assert exported["session"]["state"] == shown["state"]
    assert exported["session"]["state"]["tempo"] == 133  # a number, not the hash's "133"
    assert by_id[voice]["kind"] == "voice" and by_id[voice]["session"]["session_id"] == voice
    # Read, not used: an export leaves the sessions' last access (their orphan clock) alone.
    _, after = await call(http, "GET", f"/admin/sessions/{pattern}", token)
    assert after["accessed_at"] == before["accessed_at"]


async def test_orphans_are_deleted_only_after_a_dry_run_count_is_confirmed(
    server: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    token = admin_token(server)
    old, fresh = await orphans_and_fresh(server)
    status, dry = await call(http, "POST", "/admin/orphans/delete", token, {"older_than_days": 90, "dry_run": True})
    assert (status, dry["count"]) == (200, 2)
    for body in (
        {"older_than_days": 90},
        {"older_than_days": 0, "dry_run": True},
        {"older_than_days": "90", "dry_run": True},
        {"older_than_days": 90, "confirm_count": 2, "force": True},
    ):
        status, answer = await call(http, "POST", "/admin/orphans/delete", token, body)
        assert (status, answer["error"]) == (400, "invalid_payload"), body
    status, answer = await call(
        http, "POST", "/admin/orphans/delete", token, {"older_than_days": 90, "confirm_count": 5}
    )
    assert (status, answer["error"], answer["count"]) == (409, "conflict", 2)
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    assert metrics["total"]["sessions"] == 3  # nothing deleted by a refused request
    watcher = Client(server.url, server.token("alice", ttl_s=LONG_TTL_S))
    clients.append(watcher)
    await watcher.connect()
    assert (await watcher.call("subscribe_on_session", {"session_id": fresh[0]}))["ok"] is True
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(
        "/admin/orphans/delete", headers=headers, json={"older_than_days": 90, "confirm_count": 2}
    ) as response:
        assert response.status == 200
        progress = [json.loads(line) for line in (await response.text()).splitlines()]
    assert progress[-1] == {"done": True, "deleted": 2, "total": 2}
    for session_id in old:
        assert await server.services.sessions.meta(session_id) is None
    assert await server.services.sessions.meta(fresh[0]) is not None
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    assert (metrics["total"]["sessions"], metrics["total"]["orphaned"]) == (1, 0)
    _, audit = await call(http, "GET", "/admin/audit", token)
    assert audit["entries"][0]["action"] == "delete_orphans"
    assert audit["entries"][0]["detail"] == {"older_than_days": 90, "confirmed": 2, "deleted": 2}
    assert watcher.named("session_deleted") == []


async def test_alerts_for_large_sessions_dead_letters_and_a_creation_spike(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    _, quiet = await call(http, "GET", "/admin/alerts", token)
    assert quiet["alerts"] == []
    big = await server.create_session("alice")
    redis, keys = server.services.redis, server.services.keys
    await redis.hset(keys.session(big), "name", "x" * 150_000)
    await server.services.sessions.touch(big, "voice", created_ms=0, force=True)
    await redis.lpush(keys.jobs_dead(), "{}")
    server.services.clock.shift_ms = 8 * HOUR_MS  # a spike needs hours of history to stand out from
    for _ in range(20):
        await server.create_session("bob")
    _, loud = await call(http, "GET", "/admin/alerts", token)
    names = {alert["alert"]: alert for alert in loud["alerts"]}
    assert set(names) == {"large_sessions", "dead_letters", "creation_rate"}
    assert names["large_sessions"]["largest"][0]["session_id"] == big
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    assert {alert["alert"] for alert in metrics["alerts"]} == set(names)


async def spike_after_steady_hours(server: ServerUnderTest, *, steady_hours: int, spike_at_ms: int) -> None:
    """Two sessions at the start of each of ``steady_hours`` hours, then 25 at ``spike_at_ms`` (the
    server's clock moved for real: every index and count sees those times)."""
    clock = server.services.clock
    for hour in range(steady_hours):
        clock.shift_ms = hour * HOUR_MS
        for _ in range(2):
            await server.create_session("alice")
    clock.shift_ms = spike_at_ms
    for _ in range(25):
        await server.create_session("bob")


async def test_a_new_server_raises_no_creation_spike_for_its_first_busy_hour(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """A fresh server's first use was "25 sessions created in the last hour (hourly average 0.0)":
    the average of hours nobody used it. With nothing to compare with, there is no alert."""
    await spike_after_steady_hours(server, steady_hours=0, spike_at_ms=0)
    _, fresh = await call(http, "GET", "/admin/alerts", admin_token(server))
    assert fresh["alerts"] == []


async def test_no_creation_spike_is_raised_before_six_hours_of_history(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    # Five and a half hours of history before the last hour: fewer than the six it needs.
    await spike_after_steady_hours(server, steady_hours=7, spike_at_ms=6 * HOUR_MS + HOUR_MS // 2)
    _, young = await call(http, "GET", "/admin/alerts", admin_token(server))
    assert young["alerts"] == []


async def test_a_creation_spike_is_measured_against_the_hours_the_store_has(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    # Seven hours of two an hour, then 25 in one: five times their average and over the minimum.
    await spike_after_steady_hours(server, steady_hours=7, spike_at_ms=8 * HOUR_MS)
    _, loud = await call(http, "GET", "/admin/alerts", admin_token(server))
    (spike,) = loud["alerts"]
    assert (spike["alert"], spike["last_hour"], spike["hourly_average"], spike["history_hours"]) == (
        "creation_rate",
        25,
        2.0,
        7,
    )
    assert spike["message"] == "25 sessions created in the last hour (hourly average 2.0 over the 7 h before)"


async def test_prometheus_endpoint_counts_requests_and_sessions(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    await server.create_session("alice")
    await call(http, "GET", "/admin/sessions/not-a-uuid", token)
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get("/metrics", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert 'sessionhub_sessions{kind="voice"} 1.0' in text
    assert 'sessionhub_sessions{kind="pattern"} 0.0' in text
    assert 'sessionhub_http_requests_total{method="GET",route="/admin/sessions/{session_id}",status="400"} 1.0' in text
    assert 'sessionhub_jobs{state="dead"} 0.0' in text
    assert 'sessionhub_alerts{alert="bus_down"} 0.0' in text


async def test_a_deletion_of_orphans_cut_off_by_its_operator_is_in_the_audit_log(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """The operator's connection closed after the first progress line: the next one failed and
    ended the deletion, having deleted sessions, and the audit log had no entry for it (audit
    "multinode"). It now says how many went, and that it did not complete."""
    token = admin_token(server)
    total = 300
    for _ in range(total):
        await server.create_session("alice")
    server.services.clock.shift_ms = 100 * DAY_MS
    headers = {"Authorization": f"Bearer {token}"}
    response = await http.post(
        "/admin/orphans/delete", headers=headers, json={"older_than_days": 90, "confirm_count": total}
    )
    assert response.status == 200
    first = json.loads(await response.content.readline())
    assert first["done"] == 49 and first["total"] == total, first
    response.close()  # the operator's connection goes

    entries: list[Any] = []
    for _ in range(200):  # until the server has noticed and written its entry (bounded)
        _, audit = await call(http, "GET", "/admin/audit", token)
        entries = [e for e in audit["entries"] if e["action"] == "delete_orphans"]
        if entries:
            break
        await asyncio.sleep(0.05)
    assert len(entries) == 1, audit
    _, metrics = await call(http, "GET", "/admin/metrics", token)
    left = metrics["total"]["sessions"]
    detail = entries[0]["detail"]
    assert detail["deleted"] == total - left and detail["deleted"] >= 50, (detail, left)
    if left:  # cut before the end, as the operator meant
        assert detail["completed"] is False, detail
