"""The history: pages, filters, stats per local day (DST days included), streaks, export, deletion."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp

from tests.helpers import Client, ServerUnderTest
from tests.listening.support import FrozenClock, auth, listener
from tests.listening.test_report import sessions

HOUR = 3_600_000
MIN = 60_000
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


async def get(server: ServerUnderTest, path: str, user: str = "alice", **query: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}{path}", params=query, headers=auth(server, user)) as r:
            text = await r.text()
            return r.status, (json.loads(text) if r.content_type == "application/json" else text)


async def upload(
    server: ServerUnderTest,
    start: int,
    end: int,
    *,
    user: str = "alice",
    item: str = "book",
    device: str = "d1",
    title: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "item_id": item,
        "device_id": device,
        "client_id": f"c{start}-{device}",
        "started_at": start,
        "ended_at": end,
    }
    if title is not None:
        body["item"] = {"title": title}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/listening/upload", json=body, headers=auth(server, user)) as r:
            assert r.status == 201, await r.text()
            return dict(await r.json())


def by_date(stats: dict[str, Any]) -> dict[str, int]:
    return {d["date"]: d["total_ms"] for d in stats["days"] if d["total_ms"]}


async def test_midnight_split_in_two_time_zones_on_dst_days(lserver: ServerUnderTest, clock: FrozenClock) -> None:
    clock.base_ms = int(NOW.timestamp() * 1000)
    # Across Berlin's midnight on the night clocks go forward (29 March 2026, a 23-hour day).
    await upload(lserver, ms(2026, 3, 28, 22, 30), ms(2026, 3, 29, 2, 0), user="alice")
    # Berlin's whole 29 March: 23 hours from midnight to midnight.
    await upload(lserver, ms(2026, 3, 28, 23), ms(2026, 3, 29, 22), user="bob")
    # New York's 1 November 2026 (clocks go back: 25 hours), in two uploads of under a day.
    await upload(lserver, ms(2026, 11, 1, 4), ms(2026, 11, 1, 16), user="carol")
    await upload(lserver, ms(2026, 11, 1, 16), ms(2026, 11, 2, 5), user="carol")

    async def days(user: str, tz: str) -> dict[str, int]:
        status, body = await get(lserver, "/api/listening/stats", user, tz=tz, days=366)
        assert status == 200, body
        return by_date(body)

    assert await days("alice", "Europe/Berlin") == {"2026-03-28": 30 * MIN, "2026-03-29": 3 * HOUR}
    assert await days("alice", "America/New_York") == {"2026-03-28": 3 * HOUR + 30 * MIN}
    assert await days("bob", "Europe/Berlin") == {"2026-03-29": 23 * HOUR}
    assert await days("bob", "America/New_York") == {"2026-03-28": 5 * HOUR, "2026-03-29": 18 * HOUR}
    assert await days("carol", "America/New_York") == {"2026-11-01": 25 * HOUR}
    assert await days("carol", "Europe/Berlin") == {"2026-11-01": 19 * HOUR, "2026-11-02": 6 * HOUR}
    status, body = await get(lserver, "/api/listening/stats", "carol", tz="America/New_York")
    assert status == 200, body
    assert len(body["days"]) == 30 and body["days"][-1] == {"date": "2026-11-21", "total_ms": 0}
    assert body["total_ms"] == 25 * HOUR and body["count"] == 2


async def test_streaks_count_today_once_listened(lserver: ServerUnderTest, clock: FrozenClock) -> None:
    clock.base_ms = int(NOW.timestamp() * 1000)
    for day in (10, 11, 12, 13, 14, 19, 20):
        await upload(lserver, ms(2026, 11, day, 9), ms(2026, 11, day, 9, 30))
    _, body = await get(lserver, "/api/listening/stats", tz="UTC")
    assert body["streak"]["current"] == 2 and body["streak"]["longest"] == 5
    await upload(lserver, ms(2026, 11, 21, 8), ms(2026, 11, 21, 8, 1))
    _, body = await get(lserver, "/api/listening/stats", tz="UTC")
    assert body["streak"]["current"] == 3 and body["streak"]["longest"] == 5
    # In Tokyo, 21 Nov 08:00 UTC is 17:00 the same day; 20 Nov 09:00 UTC is 18:00: same days.
    _, body = await get(lserver, "/api/listening/stats", tz="Asia/Tokyo")
    assert body["streak"]["current"] == 3
    assert body["total_ms"] == 7 * 30 * MIN + MIN and body["items"][0]["total_ms"] == body["total_ms"]
    assert [s["started_at"] for s in body["last"]][:2] == [ms(2026, 11, 21, 8), ms(2026, 11, 20, 9)]


async def test_pages_by_cursor_filter_by_item_and_date(lserver: ServerUnderTest, clock: FrozenClock) -> None:
    clock.base_ms = int(NOW.timestamp() * 1000)
    start = ms(2026, 11, 1)
    expected = []
    for i in range(6):
        for device in ("a", "b", "c") if i == 3 else ("a",):  # three sessions start at once
            item = "even" if i % 2 == 0 else "odd"
            made = await upload(lserver, start + i * HOUR, start + i * HOUR + MIN, item=item, device=device)
            expected.append((start + i * HOUR, made["listening"]["id"], item))
    newest_first = sorted(expected, key=lambda e: (e[0], e[1]), reverse=True)

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        _, body = await get(lserver, "/api/listening/sessions", **query)
        seen += [s["id"] for s in body["sessions"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [e[1] for e in newest_first]

    seen = []
    cursor = None
    for _ in range(10):
        query = {"limit": 2, "item_id": "odd"} | ({"cursor": cursor} if cursor else {})
        _, body = await get(lserver, "/api/listening/sessions", **query)
        seen += [s["id"] for s in body["sessions"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [e[1] for e in newest_first if e[2] == "odd"]

    window = {"from": start + HOUR, "to": start + 3 * HOUR}
    rows = await sessions(lserver, **window)
    assert [r["started_at"] for r in rows] == [start + 2 * HOUR, start + HOUR]
    rows = await sessions(lserver, item_id="even", **window)
    assert [r["started_at"] for r in rows] == [start + 2 * HOUR]


async def test_export_as_csv_and_json(lserver: ServerUnderTest, clock: FrozenClock) -> None:
    clock.base_ms = int(NOW.timestamp() * 1000)
    await upload(lserver, ms(2026, 11, 2, 10), ms(2026, 11, 2, 11), title='=HYPERLINK("http://evil")', item="x")
    await upload(lserver, ms(2026, 11, 3, 10), ms(2026, 11, 3, 10, 30), title="Plain, with comma", item="y")
    status, text = await get(lserver, "/api/listening/export", format="csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["title"] for r in rows] == ["Plain, with comma", '\'=HYPERLINK("http://evil")']
    assert rows[1]["duration_ms"] == str(HOUR) and rows[1]["started_at_utc"] == "2026-11-02T10:00:00.000Z"
    # For Excel, the same CSV after a UTF-8 byte-order mark: without it Excel reads the file in
    # the machine's old code page, and titles not in Latin letters come out garbled.
    status, excel = await get(lserver, "/api/listening/export", format="csv", bom="1")
    assert (status, excel) == (200, "\ufeff" + text)
    status, body = await get(lserver, "/api/listening/export", format="json")
    assert status == 200 and [s["item_id"] for s in body["sessions"]] == ["y", "x"]
    assert (await get(lserver, "/api/listening/export", format="xml"))[0] == 400
    # Nobody else's history leaks into an export.
    _, other = await get(lserver, "/api/listening/export", "mallory", format="json")
    assert other["sessions"] == []


async def test_delete_one_and_clear_all_are_events(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    now = clock.now_ms()
    made = []
    for i in range(3):
        ack = await alice.client.call(
            "listening_upload",
            {
                "session_id": alice.history_id,
                "item_id": f"i{i}",
                "device_id": "d",
                "client_id": f"c{i}",
                "started_at": now - (i + 2) * HOUR,
                "ended_at": now - (i + 1) * HOUR,
            },
        )
        made.append(ack["listening"]["id"])
    deleted = await alice.client.call("listening_delete", {"session_id": alice.history_id, "id": made[0]})
    assert deleted["ok"] is True
    again = await alice.client.call("listening_delete", {"session_id": alice.history_id, "id": made[0]})
    assert again["error"] == "not_found"
    assert [r["id"] for r in await sessions(lserver)] == made[1:]
    async with aiohttp.ClientSession() as http:
        url = f"{lserver.url}/api/listening/sessions/{made[1]}"
        async with http.delete(url, headers=auth(lserver, "mallory")) as r:
            assert r.status == 404  # mallory has no history, and never reaches alice's
        async with http.delete(url, headers=auth(lserver)) as r:
            assert r.status == 200
    refused = await alice.client.call("listening_clear", {"session_id": alice.history_id})
    assert refused["error"] == "invalid_payload"
    refused = await alice.client.call("listening_clear", {"session_id": alice.history_id, "confirm": "yes"})
    assert refused["error"] == "invalid_payload"
    cleared = await alice.client.call("listening_clear", {"session_id": alice.history_id, "confirm": True})
    assert cleared["ok"] is True and cleared["removed"] == 1
    assert await sessions(lserver) == []
    _, stats = await get(lserver, "/api/listening/stats")
    assert stats["total_ms"] == 0 and stats["count"] == 0 and stats["items"] == []
    await alice.client.wait_for(lambda: any(n == "listening_cleared" for n, _ in alice.log_events()))
    names = [n for n, _ in alice.log_events()]
    assert names == ["listening_session"] * 3 + ["listening_removed"] * 2 + ["listening_cleared"]
