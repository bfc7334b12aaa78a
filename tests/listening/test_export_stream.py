"""Large histories: the export streams page by page, exports per user are bounded, stats read in slices."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from handlers.listening.export import CSV_COLUMNS, EXPORT_PAGE, EXPORT_RETRY_AFTER_S, EXPORTS_PER_USER
from handlers.listening.http import STATS_SLICE
from storage.listening.model import ListeningRules, ListeningSession, Upload
from storage.listening.repository import ListeningHistories
from tests.helpers import ServerUnderTest
from tests.listening.support import FrozenClock, auth
from tests.listening.test_history import NOW

pytestmark = pytest.mark.timeout(120)

HOUR = 3_600_000
LONG = "x" * 300  # metadata at its largest makes pages heavy


async def fill(server: ServerUnderTest, count: int, *, user: str = "alice", step_ms: int = 2_000) -> str:
    """``count`` one-second sessions written through the repository, newest ending at the clock's now."""
    histories = ListeningHistories(server.services.store, rules=ListeningRules())
    history_id = await histories.ensure(user)
    now = server.services.clock.now_ms()

    def one(i: int) -> Awaitable[Any]:
        start = now - (i + 1) * step_ms
        item = f"item-{i % 50}"
        meta = {"title": "=" + item if i % 50 == 7 else f"{item}, {LONG}", "artist": LONG, "album": None}
        upload = Upload(item, "d", f"c{i}", started_at=start, ended_at=start + 1_000, meta=meta)
        return histories.upload(history_id, user, upload)

    for low in range(0, count, 200):
        await asyncio.gather(*(one(i) for i in range(low, min(count, low + 200))))
    return history_id


async def all_via_pages(server: ServerUnderTest) -> list[dict[str, Any]]:
    """Every session as the paged list shows it, newest first."""
    rows: list[dict[str, Any]] = []
    cursor = None
    async with aiohttp.ClientSession() as http:
        while True:
            query = {"limit": "200"} | ({"cursor": cursor} if cursor else {})
            async with http.get(f"{server.url}/api/listening/sessions", params=query, headers=auth(server)) as r:
                body = await r.json()
            rows += body["sessions"]
            cursor = body["next_cursor"]
            if cursor is None:
                return rows


def count_reads(
    monkeypatch: pytest.MonkeyPatch, gate: Callable[[list[str]], Awaitable[None]] | None = None
) -> list[int]:
    """Record how many records each ``get_many`` reads (optionally holding some reads at ``gate``)."""
    reads: list[int] = []
    original = ListeningHistories.get_many

    async def counted(self: ListeningHistories, history_id: str, ids: list[str]) -> list[ListeningSession]:
        reads.append(len(ids))
        if gate is not None:
            await gate(ids)
        return await original(self, history_id, ids)

    monkeypatch.setattr(ListeningHistories, "get_many", counted)
    return reads


async def test_a_multi_page_export_is_the_same_document_and_csv(lserver: ServerUnderTest) -> None:
    total = 2 * EXPORT_PAGE + 37
    await fill(lserver, total)
    rows = await all_via_pages(lserver)
    assert len(rows) == total
    async with aiohttp.ClientSession() as http:
        url = f"{lserver.url}/api/listening/export"
        async with http.get(url, params={"format": "json"}, headers=auth(lserver)) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "application/json; charset=utf-8"
            assert r.headers["Content-Disposition"] == 'attachment; filename="listening-history.json"'
            text = await r.text()
        # Byte for byte what one json.dumps of the whole history gave.
        assert text == json.dumps({"user_id": "alice", "sessions": rows}, separators=(",", ":"))
        async with http.get(url, params={"format": "csv"}, headers=auth(lserver)) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
            assert r.headers["Content-Disposition"] == 'attachment; filename="listening-history.csv"'
            text = await r.text()
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == list(CSV_COLUMNS) and len(lines) == total + 1
    assert [line[0] for line in lines[1:]] == [row["id"] for row in rows]
    assert lines[1 + 7][2] == "'=item-7" and lines[1 + 7][3] == LONG
    assert text.count("\r\n") == total + 1


async def test_first_bytes_leave_before_the_whole_history_is_read(
    lserver: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 10 * EXPORT_PAGE
    await fill(lserver, total)
    reads = count_reads(monkeypatch)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{lserver.url}/api/listening/export", headers=auth(lserver)) as r:
            assert r.status == 200
            first = await r.content.readany()
            read_by_then = sum(reads)
            rest = await r.read()
    assert first.startswith(b'{"user_id":"alice","sessions":[')
    assert read_by_then < total, "the whole history was read before the first byte left"
    assert max(reads) <= EXPORT_PAGE
    assert len(json.loads(first + rest)["sessions"]) == total


async def test_a_user_runs_few_exports_at_once_and_a_gone_client_stops_its_export(
    lserver: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 3 * EXPORT_PAGE
    history_id = await fill(lserver, total)
    histories = ListeningHistories(lserver.services.store, rules=ListeningRules())
    (newest,), _ = await histories.page(history_id, limit=1, cursor=None, from_ms=0, to_ms=2**53)
    release = asyncio.Event()
    held: set[asyncio.Task[Any] | None] = set()
    late: list[asyncio.Task[Any] | None] = []

    async def gate(ids: list[str]) -> None:
        # An export's first page passes; later ones wait here until the test lets them go.
        if ids and ids[0] != newest.id and not release.is_set():
            held.add(asyncio.current_task())
            await release.wait()
        elif release.is_set():
            late.append(asyncio.current_task())

    count_reads(monkeypatch, gate)
    url = f"{lserver.url}/api/listening/export"
    stalled = [aiohttp.ClientSession() for _ in range(EXPORTS_PER_USER)]
    answers: list[aiohttp.ClientResponse] = []
    try:
        for http in stalled:
            r = await http.get(url, headers=auth(lserver))
            answers.append(r)
            assert r.status == 200
            assert (await r.content.readany()).startswith(b'{"user_id"')
        async with aiohttp.ClientSession() as http:
            async with http.get(url, headers=auth(lserver)) as r:
                refusal = await r.json()
                assert r.status == 429 and refusal["error"] == "rate_limited"
                assert refusal["retry_after_s"] == EXPORT_RETRY_AFTER_S
            # Someone else's export is not held up by alice's.
            async with http.get(url, headers=auth(lserver, "bob")) as r:
                assert r.status == 200 and (await r.json())["sessions"] == []
    finally:
        # The clients go away mid-export. Each answer's connection is closed with it: a session
        # closed under an answer still being read left its Connection to the garbage collector,
        # which on Python 3.13 warned "Unclosed connection" (ResourceWarning) into the next test.
        for answer in answers:
            answer.close()
        for http in stalled:
            await http.close()
    release.set()
    async with aiohttp.ClientSession() as http:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            async with http.get(url, headers=auth(lserver)) as r:
                if r.status == 200:
                    assert len((await r.json())["sessions"]) == total
                    break
                assert r.status == 429
            assert asyncio.get_running_loop().time() < deadline, "the gone clients' exports kept their slots"
            await asyncio.sleep(0.01)
    assert held and not held & set(late), "an export read on after its client had gone"


async def test_stats_read_in_slices_and_add_up(
    lserver: ServerUnderTest, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.base_ms = int(NOW.timestamp() * 1000)
    total = STATS_SLICE + 100
    # A second every six hours, never across midnight, on every day from today back.
    await fill(lserver, total, step_ms=6 * HOUR)
    days = {datetime.fromtimestamp((clock.now_ms() - (i + 1) * 6 * HOUR) / 1000, UTC).date() for i in range(total)}
    reads = count_reads(monkeypatch)
    async with aiohttp.ClientSession() as http:
        params = {"tz": "UTC", "days": "366"}
        async with http.get(f"{lserver.url}/api/listening/stats", params=params, headers=auth(lserver)) as r:
            assert r.status == 200
            body = await r.json()
    assert max(reads) <= STATS_SLICE and len(reads) >= 2
    assert body["count"] == total
    assert sum(day["total_ms"] for day in body["days"]) == total * 1_000
    assert body["streak"]["current"] == body["streak"]["longest"] == len(days)
    assert sum(day["total_ms"] > 0 for day in body["days"]) == len(days)
