"""The blob folder's files that no record names are removed by the cleanup pass; nothing else is.

An audit killed ``serve`` (``kill -9``) while clients uploaded: 3 times in 14 rounds a chunk's file
had been stored and its record not, and the file stayed until its session was deleted, counted in
neither ``storage_bytes`` nor any quota; a folder for a session id that does not exist stayed for
good (only ``.incoming`` was swept). Now every node's cleanup pass removes, a bounded batch of
folders at a time, a chunk file no chunk names and a session folder whose session does not exist,
once last written longer ago than an upload may still be storing and recording it
(storage.voice.unrecorded_blobs); a file in flight, a recorded file and names the server never
gives stay. Two nodes sweeping one shared folder at once remove each file once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from storage.keys import Keys
from storage.voice import unrecorded_blobs
from storage.voice.blobs import INCOMING_GRACE_S
from storage.voice.unrecorded_blobs import BlobFolder, UnrecordedBlobs
from tests.audio_samples import wav
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.voice.test_incoming_sweep import gone
from tests.voice.uploads import chunk_form, get_json, upload

DEADLINE_S = 30.0
STALE_S = DEADLINE_S + INCOMING_GRACE_S
WEEK_S = unrecorded_blobs.NO_SESSION_GRACE_S


def planted(folder: Path, age_s: float, name: str | None = None) -> Path:
    """A file as a chunk's (named by its sha256 unless ``name``), last written ``age_s`` ago."""
    folder.mkdir(parents=True, exist_ok=True)
    body = os.urandom(2048)
    path = folder / (name or hashlib.sha256(body).hexdigest())
    path.write_bytes(body)
    aged(path, age_s)
    return path


def aged(path: Path, age_s: float) -> None:
    then = time.time() - age_s
    os.utime(path, (then, then))


async def recorded_chunks(server: ServerUnderTest, session_id: str, count: int) -> list[Path]:
    """``count`` chunks uploaded through the route (file and record), their files made old."""
    files = []
    for n in range(count):
        status, body = await upload(server, server.token("alice"), chunk_form(session_id, wav(1000 + n * 100)))
        assert status == 201, body
        path = server.services.voice.config.blob_dir / session_id / body["chunk"]["sha256"]
        aged(path, STALE_S + 3600)
        files.append(path)
    return files


def removed(server: ServerUnderTest, why: str) -> float:
    value = server.services.metrics.registry.get_sample_value("sessionhub_blob_files_removed_total", {"why": why})
    return value or 0.0


async def test_files_without_records_and_folders_without_sessions_go_and_nothing_else(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    blob_dir = tmp_path / "blobs"
    settings = {"voice_blob_dir": blob_dir, "voice_upload_deadline_s": DEADLINE_S}
    server = await start_server(redis_process.url, tmp_path, cleanup_retry_s=3600, **settings)
    try:
        session_id = await server.create_session("alice")
        kept = await recorded_chunks(server, session_id, 2)
    finally:
        await server.stop()
    folder = blob_dir / session_id
    unrecorded = planted(folder, WEEK_S + 60)  # stored, then the process was killed, a week ago
    in_flight = planted(folder, STALE_S - 60)  # stored, its record about to be written
    # Stored a day ago, and no record names it: a Redis restored from an older backup than the
    # upload (audit "restore"). Kept a week: the operator may restore a later one.
    restored_over = planted(folder, 86400)
    foreign = planted(folder, STALE_S + 60, name="notes.txt")  # no name the server gives
    stray = blob_dir / str(uuid.uuid4())  # a session that does not exist, for over a week
    stray_files = [planted(stray, WEEK_S + 60), planted(stray, WEEK_S + 86400)]
    # No session, its newest file a day old: kept a week (a Redis restored from a backup names it).
    recent = blob_dir / str(uuid.uuid4())
    recent_files = [planted(recent, WEEK_S + 60), planted(recent, 86400)]
    arriving = blob_dir / str(uuid.uuid4())  # no session, but a file too young to judge
    arriving_file = planted(arriving, 0)
    not_ours = planted(blob_dir / "lost+found", STALE_S + 86400)

    server = await start_server(redis_process.url, tmp_path, cleanup_retry_s=0.1, **settings)
    try:
        assert await gone(unrecorded) and await gone(stray)
        await asyncio.sleep(0.5)  # a few more passes
        survivors = [*kept, in_flight, restored_over, foreign, arriving_file, not_ours, *recent_files]
        assert all(path.exists() for path in survivors), [str(p) for p in survivors if not p.exists()]
        assert not any(path.exists() for path in stray_files)
        assert (removed(server, "no_record"), removed(server, "no_session")) == (1, 2)
        # The session's chunks play as before, and count as before.
        status, listed = await get_json(server, f"/voicebot/sessions/{session_id}/chunks", server.token("alice"))
        assert status == 200 and listed["chunk_count"] == 2, listed
        assert listed["storage_bytes"] == sum(path.stat().st_size for path in kept)
        # A chunk uploaded while the passes run is stored, recorded and kept.
        status, body = await upload(server, server.token("alice"), chunk_form(session_id, wav(5000)))
        assert status == 201, body
        await asyncio.sleep(0.5)
        assert (folder / body["chunk"]["sha256"]).exists() and in_flight.exists()
        assert (removed(server, "no_record"), removed(server, "no_session")) == (1, 2)
    finally:
        await server.stop()


async def test_two_nodes_sweeping_one_folder_at_once_remove_each_file_once(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    blob_dir = tmp_path / "blobs"
    server = await start_server(
        redis_process.url, tmp_path, voice_blob_dir=blob_dir, voice_upload_deadline_s=DEADLINE_S, cleanup_retry_s=3600
    )
    try:
        session_id = await server.create_session("alice")
        kept = await recorded_chunks(server, session_id, 3)
        for _ in range(40):
            planted(blob_dir / session_id, WEEK_S + 60)
        stray = blob_dir / str(uuid.uuid4())
        for _ in range(40):
            planted(stray, WEEK_S + 60)
        nodes = [
            UnrecordedBlobs(root=blob_dir, redis=server.services.redis, keys=server.services.keys, grace_s=STALE_S)
            for _ in range(2)
        ]
        totals = {"no_record": 0, "no_session": 0, "folders": 0}
        for _ in range(3):
            for swept in await asyncio.gather(*(node.sweep() for node in nodes)):
                totals["no_record"] += swept.no_record
                totals["no_session"] += swept.no_session
                totals["folders"] += swept.folders
        assert totals == {"no_record": 40, "no_session": 40, "folders": 1}
        assert sorted(p.name for p in (blob_dir / session_id).iterdir()) == sorted(p.name for p in kept)
        assert not stray.exists()
        assert list((blob_dir / ".incoming").iterdir()) == []  # nothing taken was left behind
    finally:
        await server.stop()


async def test_a_pass_looks_into_a_bounded_batch_of_folders(redis: Redis, tmp_path: Path) -> None:
    batch = unrecorded_blobs.FOLDERS_PER_PASS
    for _ in range(batch + 3):
        planted(tmp_path / str(uuid.uuid4()), WEEK_S + 60)
    await redis.zadd(Keys().all_sessions(), {str(uuid.uuid4()): 1})  # the store holds sessions
    sweeper = UnrecordedBlobs(root=tmp_path, redis=redis, keys=Keys(), grace_s=STALE_S)
    assert (await sweeper.sweep()).folders == batch
    assert (await sweeper.sweep()).folders == 3
    assert [p for p in tmp_path.iterdir() if p.name != ".incoming"] == []


async def test_a_store_that_lost_its_sessions_keeps_every_folder_and_says_so(
    redis: Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis that came back empty (a lost append-only file, a new Redis by mistake): the files
    are all that is left of its sessions, kept for a restore from a backup, however old."""
    await redis.delete(Keys().all_sessions())
    folders = [tmp_path / str(uuid.uuid4()) for _ in range(3)]
    files = [planted(folder, WEEK_S * 10) for folder in folders]
    sweeper = UnrecordedBlobs(root=tmp_path, redis=redis, keys=Keys(), grace_s=STALE_S)
    with caplog.at_level(logging.WARNING, logger="storage.voice.unrecorded_blobs"):
        swept = await sweeper.sweep()
        assert (swept.no_session, swept.folders) == (0, 0)
        assert all(path.exists() for path in files)
        assert "3 audio folder(s) of sessions that do not exist are kept" in caplog.text
        caplog.clear()
        await sweeper.sweep()  # the same three: not said again every pass
        assert "are kept" not in caplog.text
    # Once the store holds sessions again, the week-old folders of none of them go.
    await redis.zadd(Keys().all_sessions(), {str(uuid.uuid4()): 1})
    assert (await sweeper.sweep()).folders == 3
    assert not any(folder.exists() for folder in folders)


def test_a_file_an_upload_put_back_in_place_since_it_was_judged_old_is_not_taken(tmp_path: Path) -> None:
    """Judged old, then an upload of the same audio committed a fresh copy before the sweep took
    it: the taken file is that copy, which goes back in place."""
    session_id = str(uuid.uuid4())
    path = planted(tmp_path / session_id, 0)
    cutoff = time.time() - STALE_S
    assert BlobFolder(tmp_path).take(session_id, path.name, cutoff) is None
    assert path.exists()
    assert list((tmp_path / ".incoming").iterdir()) == []
