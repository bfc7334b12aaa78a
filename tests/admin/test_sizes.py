"""A session's size in the admin figures counts what its kind keeps besides its record and log
(a stream's clips, a voice session's chunks), and an audience session is counted when made."""

from __future__ import annotations

import asyncio

import pytest

import storage.sessions as sessions_module
from storage.streams.repository import StreamSessions
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, started, submitter


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
    _, measured = await services.sessions.measure(session_id, "stream")
    assert measured > before
    async with asyncio.timeout(10):  # the trailing touch, a few hundred ms on
        while int(await redis.zscore(keys.admin_size(), session_id)) != measured:
            await asyncio.sleep(0.05)
