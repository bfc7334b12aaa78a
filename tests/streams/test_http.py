"""Stream sessions over HTTP: create, list, read, review, moments and file downloads."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.streams.helpers import connect, create_stream, http, started
from tests.helpers import Client, ServerUnderTest


async def test_create_answers_the_session_and_its_links(server: ServerUnderTest) -> None:
    status, body = await http(
        server, "POST", "/api/streams", json={"title": "  Raid night ", "game": "Celeste", "viewer_delay_s": 30}
    )
    assert status == 201
    session = body["session"]
    assert (session["title"], session["game"], session["viewer_delay_s"], session["state"]) == (
        "Raid night",
        "Celeste",
        30,
        "created",
    )
    assert session["segments"] == [] and session["is_owner"] is True
    assert body["viewer_url"] == f"/watch/{session['session_id']}"
    assert body["streamer_url"] == f"/streams/{session['session_id']}"


async def test_list_is_the_owners_newest_first(server: ServerUnderTest) -> None:
    first = await create_stream(server, title="First")
    server.services.clock.shift_ms = 5  # two creations in one millisecond would tie
    try:
        second = await create_stream(server, title="Second")
    finally:
        server.services.clock.shift_ms = 0
    await create_stream(server, user="bob", title="Bob's")
    status, body = await http(server, "GET", "/api/streams")
    assert status == 200
    assert [s["session_id"] for s in body["sessions"]] == [second, first]
    status, body = await http(server, "GET", "/api/me/sessions")
    assert {e["kind"] for e in body["sessions"]} == {"stream"} and body["sessions"][0]["url"] == f"/streams/{second}"


async def test_a_refusal_that_says_how_long_to_wait_carries_retry_after(server: ServerUnderTest) -> None:
    """A 429 with ``retry_after_s`` (here the clip cooldown) also says it in ``Retry-After``,
    whole seconds rounded up, as HTTP clients and proxies read it."""
    session_id = await create_stream(server)
    assert (await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"}))[0] == 200
    headers = {"Authorization": f"Bearer {server.token('viewer')}"}
    async with aiohttp.ClientSession() as client:
        path = f"{server.url}/api/streams/{session_id}/clips"
        async with client.post(path, json={"note": "first"}, headers=headers) as first:
            assert first.status == 201
        async with client.post(path, json={"note": "too soon"}, headers=headers) as refused:
            body = await refused.json()
            assert (refused.status, body["error"]) == (429, "rate_limited")
            assert int(refused.headers["Retry-After"]) == math.ceil(body["retry_after_s"]) >= 1
    async with aiohttp.ClientSession() as client, client.get(f"{server.url}/openapi.json") as response:
        documented = (await response.json())["paths"]["/api/streams/{session_id}/clips"]["post"]["responses"]["429"]
    assert "Retry-After" in documented["headers"]


async def test_state_over_http(server: ServerUnderTest) -> None:
    session_id = await create_stream(server)
    status, body = await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    assert (status, body["state"], body["previous"]) == (200, "active", "created")
    status, body = await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    assert (status, body["error"], body["state"]) == (409, "invalid_state", "active")


async def click(
    server: ServerUnderTest, clients: list[Client], session_id: str, user: str, note: str
) -> dict[str, Any]:
    viewer = await connect(server, clients, user)
    ack = await viewer.call("clip_submit", {"session_id": session_id, "note": note})
    assert ack["ok"] is True, ack
    return dict(ack["clip"])


async def raid(server: ServerUnderTest, clients: list[Client]) -> tuple[str, list[dict[str, Any]]]:
    """Two clips in segment 1, a break, one in segment 2, ended; the second clip marked clipped."""
    clock = server.services.clock
    session_id, owner = await started(server, clients)
    try:
        clock.shift_ms = 12_000
        first = await click(server, clients, session_id, "viewer-1", 'wow, "that"')
        clock.shift_ms = 15_000
        second = await click(server, clients, session_id, "viewer-2", "=1+1")
        clock.shift_ms = 30_000
        await owner.call("stream_set_state", {"session_id": session_id, "action": "pause"})
        clock.shift_ms = 90_000
        await owner.call("stream_set_state", {"session_id": session_id, "action": "resume"})
        clock.shift_ms = 150_000
        third = await click(server, clients, session_id, "viewer-3", "")
        clock.shift_ms = 200_000
        await owner.call("stream_set_state", {"session_id": session_id, "action": "end"})
    finally:
        clock.shift_ms = 0
    await owner.call("clip_update", {"session_id": session_id, "clip_id": second["clip_id"], "clipped": True})
    return session_id, [first, second, third]


async def download(
    server: ServerUnderTest, session_id: str, query: str, user: str = "alice"
) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{server.url}/api/streams/{session_id}/export?{query}", headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.text()


async def test_review_groups_by_segment_and_moments(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, clips = await raid(server, clients)
    status, review = await http(server, "GET", f"/api/streams/{session_id}/clips")
    assert status == 200
    assert [[c["clip_id"] for c in s["clips"]] for s in review["segments"]] == [
        [clips[0]["clip_id"], clips[1]["clip_id"]],
        [clips[2]["clip_id"]],
    ]
    assert [c["submitted_by"] for s in review["segments"] for c in s["clips"]] == ["viewer-1", "viewer-2", "viewer-3"]
    status, only = await http(server, "GET", f"/api/streams/{session_id}/clips?only=clipped")
    assert [len(s["clips"]) for s in only["segments"]] == [1, 0]

    status, body = await http(server, "GET", f"/api/streams/{session_id}/moments?window_s=10&sort=count")
    assert status == 200
    assert [(m["segment_index"], m["count"]) for m in body["moments"]] == [(1, 2), (2, 1)]
    assert body["moments"][0]["notes"] == ['wow, "that"', "=1+1"]
    status, body = await http(server, "GET", f"/api/streams/{session_id}/moments?window_s=1")
    assert [m["count"] for m in body["moments"]] == [1, 1, 1]
    status, body = await http(server, "GET", f"/api/streams/{session_id}/moments", user="viewer-1")
    assert (status, body["error"]) == (403, "forbidden")


async def test_csv_download_matches_the_clicks(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, _ = await raid(server, clients)
    status, headers, body = await download(server, session_id, "format=csv")
    assert status == 200
    assert headers["Content-Disposition"] == 'attachment; filename="raid-night-clips.csv"'
    assert headers["Content-Type"].startswith("text/csv")
    assert body.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["segment_index", "offset_hms", "note", "submitted_by", "created_at", "viewer"]
    assert [r[:4] for r in rows[1:]] == [
        ["1", "0:00:12", 'wow, "that"', "viewer-1"],
        ["1", "0:00:15", "'=1+1", "viewer-2"],
        ["2", "0:01:00", "", "viewer-3"],
    ]
    status, headers, body = await download(server, session_id, "format=csv&only=clipped")
    assert headers["Content-Disposition"] == 'attachment; filename="raid-night-clipped-clips.csv"'
    assert len(list(csv.reader(io.StringIO(body)))) == 2


@pytest.mark.parametrize(
    "query, filename",
    [
        ("format=json", "raid-night-clips.json"),
        ("format=txt&of=moments", "raid-night-moments.txt"),
        ("format=premiere&fps=23.976", "raid-night-clips-premiere-markers.csv"),
        ("format=resolve&fps=29.97", "raid-night-clips-resolve-markers.edl"),
        ("format=edl&fps=60&of=moments&only=clipped", "raid-night-clipped-moments-cmx3600.edl"),
    ],
)
async def test_every_format_is_a_download(
    server: ServerUnderTest, clients: list[Client], query: str, filename: str
) -> None:
    session_id, _ = await raid(server, clients)
    status, headers, body = await download(server, session_id, query)
    assert status == 200, body
    assert headers["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert body


@pytest.mark.parametrize(
    "title, ascii_name, full_name",
    [
        ("Überraschung Live", "uberraschung-live-clips.csv", "überraschung-live-clips.csv"),
        ("配信 テスト", "stream-clips.csv", "配信-テスト-clips.csv"),
        ("Raid night", "raid-night-clips.csv", None),
    ],
)
async def test_a_titles_own_letters_name_the_download(
    server: ServerUnderTest, title: str, ascii_name: str, full_name: str | None
) -> None:
    """A title's letters beyond ASCII were dropped from the file name (``…-mlauts-clips.csv``,
    ``stream-clips.csv`` for a title in Japanese): they are kept in ``filename*`` (RFC 6266)."""
    session_id = await create_stream(server, title=title)
    status, headers, _ = await download(server, session_id, "format=csv")
    assert status == 200
    expected = f'attachment; filename="{ascii_name}"'
    if full_name is not None:
        expected += f"; filename*=UTF-8''{quote(full_name, safe='')}"
    assert headers["Content-Disposition"] == expected
    async with aiohttp.ClientSession() as client, client.get(f"{server.url}/openapi.json") as response:
        documented = (await response.json())["paths"]["/api/streams/{session_id}/export"]["get"]["responses"]["200"]
    assert re.fullmatch(documented["headers"]["Content-Disposition"]["schema"]["pattern"], expected)


async def test_json_export_and_stream_offsets(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, clips = await raid(server, clients)
    _, _, body = await download(server, session_id, "format=json")
    document = json.loads(body)
    assert [c["clip_id"] for c in document["clips"]] == [c["clip_id"] for c in clips]
    third = document["clips"][2]
    # 30 s of segment 1 before the break, then 60 s into segment 2.
    assert (third["offset_hms"], third["stream_offset_hms"]) == ("0:01:00", "0:01:30")
    assert abs(third["stream_offset_ms"] - 90_000) < 1_000


async def test_youtube_chapters_or_the_reason_why_not(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, _ = await raid(server, clients)
    status, _, body = await download(server, session_id, "format=youtube")
    assert status == 200 and body.splitlines() == ["0:00 Start", '0:12 wow, "that"', "1:30 Clip 3"]
    status, _, body = await download(server, session_id, "format=youtube&only=clipped")
    answer = json.loads(body)
    assert status == 409 and answer["error"] == "invalid_state" and answer["reason"] == "too_few_chapters"


async def test_exports_are_the_owners(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, _ = await raid(server, clients)
    status, _, body = await download(server, session_id, "format=csv", user="viewer-1")
    assert status == 403 and json.loads(body)["error"] == "forbidden"


async def test_moments_in_text_by_their_clicks_name_their_segments(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, _ = await raid(server, clients)
    status, _, by_count = await download(server, session_id, "format=txt&of=moments&window_s=10&sort=count")
    assert status == 200 and "\nSegment 1\n" not in by_count, by_count
    assert [line.split(",")[0] for line in by_count.splitlines()[2:]] == ["Segment 1", "Segment 2"], by_count
    status, _, in_time = await download(server, session_id, "format=txt&of=moments&window_s=10")
    assert "\nSegment 1\n" in in_time and "\nSegment 2\n" in in_time, in_time
