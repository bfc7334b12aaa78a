"""A session's size in the admin figures counts what its kind keeps besides its record and log
(a stream's clips, a voice session's chunks), and an audience session is counted when made."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

import storage.sessions as sessions_module
from storage.streams.repository import StreamSessions
from tests.admin.test_http import admin_token, call
from tests.audio_samples import webm
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.streams.helpers import connect, started, submitter
from tests.voice.uploads import chunk_form, upload


async def test_a_streams_size_counts_its_clips_and_its_audience_is_counted(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """The dashboard's storage was the record and log only (a stream's 6 KB clips never
    counted), and every audience session stayed at 0 bytes until a recalculation."""
    session_id, _ = await started(server, clients)
    services = server.services
    keys, redis = services.keys, services.redis
    audience_id = await redis.hget(keys.session(session_id), "audience_id")
    assert (await redis.zscore(keys.admin_size(), audience_id) or 0) > 0  # counted when made
    submit = submitter(StreamSessions(services.store), session_id, note="n" * 90)
    for viewer in range(200):
        await submit(f"viewer-{viewer}")
    clips_bytes = int(await redis.memory_usage(keys.stream_clips(session_id)))
    record_and_log = 0
    for key in (keys.session(session_id), keys.log(session_id), keys.log_meta(session_id)):
        record_and_log += int(await redis.memory_usage(key, samples=0) or 0)
    await services.sessions.touch(session_id, "stream", created_ms=0, force=True)
    size = int(await redis.zscore(keys.admin_size(), session_id))
    assert size >= record_and_log + clips_bytes * 0.8, (size, record_and_log, clips_bytes)


async def test_the_last_clips_of_a_burst_are_measured_though_nobody_comes_back(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream's size was measured at most once a minute, at a use: its clips all came within
    its first minute, nobody opened it after, and its size stayed as measured then (28% low) for
    good (audit "operator"). A use within the interval asks one more touch at its end."""
    monkeypatch.setattr(sessions_module, "TOUCH_INTERVAL_MS", 300)
    viewers = [await connect(server, clients, f"viewer-{n}") for n in range(3)]
    session_id, _ = await started(server, clients)
    services = server.services
    keys, redis = services.keys, services.redis
    await services.sessions.touch(session_id, "stream", created_ms=0, force=True)
    before = int(await redis.zscore(keys.admin_size(), session_id))
    for viewer in viewers:  # a burst: the first use may touch, the others fall within its interval
        ack = await viewer.call("clip_submit", {"session_id": session_id, "note": "n" * 90})
        assert ack["ok"] is True, ack
    measured = (await services.sessions.measure(session_id, "stream")).size
    assert measured > before
    async with asyncio.timeout(10):  # the trailing touch, a few hundred ms on
        while int(await redis.zscore(keys.admin_size(), session_id)) != measured:
            await asyncio.sleep(0.05)


async def test_a_voice_sessions_audio_files_are_in_the_storage_figures_and_leave_with_it(
    server: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storage figures were what Redis holds: a minute of recorded audio (140 KB on disk)
    was in no figure, and the storage cost left out most of what the server keeps. The files
    are counted apart (seed 001's large sessions are of what Redis holds), each file once, in
    the metrics, Prometheus and the cost, rebuilt by a recalculation, and gone with the session."""
    monkeypatch.setattr(sessions_module, "TOUCH_INTERVAL_MS", 300)
    token = admin_token(server)
    session_id = await server.create_session("alice")
    audio, first = webm(60_000), webm(1_000)
    files = len(first) + len(audio)
    for start_ms, sent in ((1_000, first), (2_000, audio), (2_000, audio)):  # the last, a retry: stored once
        form = chunk_form(session_id, sent, start_ms=start_ms, end_ms=start_ms + 1_000)
        status, body = await upload(server, server.token("alice"), form)
        assert status in (200, 201), body
    assert body["storage_bytes"] == files
    redis, keys = server.services.redis, server.services.keys
    async with aiohttp.ClientSession(base_url=server.url) as http:

        async def figures() -> dict[str, Any]:
            status, metrics = await call(http, "GET", "/admin/metrics", token)
            assert status == 200, metrics
            return dict(metrics)

        async with asyncio.timeout(10):  # the upload's use, measured after its last chunk
            while (metrics := await figures())["kinds"]["voice"]["file_bytes"] != files:
                await asyncio.sleep(0.05)
        voice, total = metrics["kinds"]["voice"], metrics["total"]
        assert total["file_bytes"] == files
        assert voice["storage_bytes"] < 64 * 1024  # Redis's few kilobytes: the audio is not in them
        rate = 0.5 / 1024**3  # SESSIONHUB_ADMIN_STORAGE_COST_PER_GB_MONTH's default, per byte
        assert voice["monthly_cost"]["storage"] == round((voice["storage_bytes"] + files) * rate, 6)
        async with http.get("/metrics", headers={"Authorization": f"Bearer {token}"}) as response:
            assert f'sessionhub_file_bytes{{kind="voice"}} {float(files)}' in await response.text()

        await redis.hdel(keys.admin_file_bytes(), "voice")  # a total that drifted
        status, recalculated = await call(http, "POST", "/admin/recalculate", token, {})
        assert status == 200, recalculated
        assert recalculated["drift"] is True and recalculated["file_bytes_after"] == {"voice": files}
        assert (await figures())["kinds"]["voice"]["file_bytes"] == files

        status, deleted = await call(http, "DELETE", f"/admin/sessions/{session_id}", token, {"confirm": session_id})
        assert status == 200, deleted
        after = await figures()
        assert (after["kinds"]["voice"]["file_bytes"], after["total"]["file_bytes"]) == (0, 0)
        assert await redis.zscore(keys.admin_files(), session_id) is None


async def test_the_sessions_with_the_most_audio_are_listed_first_by_files(
    server: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator whose disk fills asks which sessions hold the audio: ``sort=files`` lists the
    sessions that keep files, most first, each row with its ``file_bytes`` beside its size."""
    monkeypatch.setattr(sessions_module, "TOUCH_INTERVAL_MS", 300)
    token = admin_token(server)
    sizes = {}
    for seconds in (2, 20, 8):
        session_id = await server.create_session("alice")
        audio = webm(seconds * 1_000)
        status, body = await upload(server, server.token("alice"), chunk_form(session_id, audio))
        assert status == 201, body
        sizes[session_id] = len(audio)
    await server.create_session("alice")  # no audio: not in this listing
    expected = sorted(sizes, key=lambda sid: -sizes[sid])
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with asyncio.timeout(10):  # each upload's use, measured after it
            while True:
                status, listed = await call(http, "GET", "/admin/sessions", token, sort="files")
                assert status == 200, listed
                rows = listed["sessions"]
                if [(row["session_id"], row["file_bytes"]) for row in rows] == [(sid, sizes[sid]) for sid in expected]:
                    break
                await asyncio.sleep(0.05)
        assert all(0 < row["size_bytes"] < row["file_bytes"] for row in rows[:2])
        status, listed = await call(http, "GET", "/admin/sessions", token, sort="files", order="asc", limit=1)
        assert status == 200 and listed["sessions"][0]["session_id"] == expected[-1], listed


async def test_a_files_entry_a_node_of_the_release_before_left_is_taken_out_by_a_recalculation(
    server: ServerUnderTest,
) -> None:
    """A node of the release before deletes a session without the files' index (its remove.lua
    knows no such key): the entry stayed, a page of ``sort=files`` was spent on it, and a
    recalculation never looked at it (audit "verify48")."""
    token = admin_token(server)
    gone = "0f5b1b8e-9d1c-4c7e-8a51-2c4f1d3e5a6b"
    redis, keys = server.services.redis, server.services.keys
    await redis.zadd(keys.admin_files(), {gone: 4096})  # what such a deletion leaves
    async with aiohttp.ClientSession(base_url=server.url) as http:
        status, recalculated = await call(http, "POST", "/admin/recalculate", token, {})
        assert status == 200 and recalculated["drift"] is True and recalculated["removed"] >= 1, recalculated
        status, listed = await call(http, "GET", "/admin/sessions", token, sort="files")
        assert (status, listed["sessions"], listed["next_cursor"]) == (200, [], None), listed
    assert await redis.zscore(keys.admin_files(), gone) is None


async def test_a_node_stopping_measures_the_last_clips_of_a_burst_before_it_goes(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node restarted within a minute of a burst cancelled the burst's last measure, and the
    session's size stayed low for good in every figure (audit "adminphone"). The stop makes it."""
    from tests.conftest import start_server

    monkeypatch.setattr(sessions_module, "TOUCH_INTERVAL_MS", 600_000)  # no trailing touch before the stop
    node = await start_server(redis_process.url, tmp_path / "node")
    clients: list[Client] = []
    try:
        viewers = [await connect(node, clients, f"viewer-{n}") for n in range(3)]
        session_id, _ = await started(node, clients)
        services = node.services
        keys = services.keys
        await services.sessions.touch(session_id, "stream", created_ms=0, force=True)
        before = int(await redis.zscore(keys.admin_size(), session_id))
        for viewer in viewers:
            ack = await viewer.call("clip_submit", {"session_id": session_id, "note": "n" * 90})
            assert ack["ok"] is True, ack
        measured = (await services.sessions.measure(session_id, "stream")).size
        assert measured > before
    finally:
        for client in clients:
            await client.close()
        await node.stop()
    assert int(await redis.zscore(keys.admin_size(), session_id)) == measured
