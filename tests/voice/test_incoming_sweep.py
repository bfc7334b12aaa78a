"""What chunk uploads cut off by a killed process left in ``<blob dir>/.incoming`` is removed, at
start and then at each pass of the cleanup loop, and an upload in progress keeps its file.

An upload streams into ``.incoming/<uuid>`` and removes it itself when it fails; a ``kill -9`` of
``serve`` mid-upload left the file for good (up to SESSIONHUB_VOICE_UPLOADS_IN_FLIGHT times 10 MiB per
user per kill, counted in no quota). A file counts as left behind once unwritten for longer than
the body's deadline and the grace after it (storage.voice.blobs.INCOMING_GRACE_S): no upload, on
this node or another sharing the folder, still uses one that old.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

from storage.voice.blobs import INCOMING_GRACE_S
from tests.conftest import start_server
from tests.helpers import RedisProcess
from tests.voice.test_chunks import stalled_upload

DEADLINE_S = 30.0
STALE_S = DEADLINE_S + INCOMING_GRACE_S


def planted(incoming: Path, age_s: float) -> Path:
    """A temporary upload file as a writer names it, last written ``age_s`` ago."""
    path = incoming / uuid.uuid4().hex
    path.write_bytes(b"\x00" * 4096)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


async def gone(path: Path, *, within_s: float = 10.0) -> bool:
    """Whether ``path`` disappears within ``within_s`` (polled)."""
    for _ in range(int(within_s / 0.05)):
        if not path.exists():
            return True
        await asyncio.sleep(0.05)
    return not path.exists()


async def test_leftover_upload_files_are_removed_at_start_and_then_periodically(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    """Files left before the start go at once (fresh and merely old ones stay); a file left
    while the server runs goes at the next pass, and the file of an upload still streaming
    (through a real request) is not touched."""
    blob_dir = tmp_path / "blobs"
    incoming = blob_dir / ".incoming"
    incoming.mkdir(parents=True)
    left = [planted(incoming, STALE_S + 60), planted(incoming, STALE_S + 86400)]
    young = planted(incoming, STALE_S - 60)  # past the deadline, within the grace: may be committing
    fresh = planted(incoming, 0)
    foreign = incoming / "notes.txt"  # not a name an upload gives: never ours to remove
    foreign.write_bytes(b"x")
    os.utime(foreign, (0, 0))
    server = await start_server(
        redis_process.url,
        tmp_path,
        voice_blob_dir=blob_dir,
        voice_upload_deadline_s=DEADLINE_S,
        cleanup_retry_s=3600,  # the start's sweep alone
    )
    try:
        assert all([await gone(path) for path in left])
        assert young.exists() and fresh.exists() and foreign.exists()
    finally:
        await server.stop()

    server = await start_server(
        redis_process.url, tmp_path, voice_blob_dir=blob_dir, voice_upload_deadline_s=DEADLINE_S, cleanup_retry_s=0.1
    )
    writer = None
    try:
        before = set(incoming.iterdir())
        writer = await stalled_upload(server, await server.create_session("alice"))
        streaming: set[Path] = set()
        for _ in range(200):  # until the server writes the upload's file
            streaming = set(incoming.iterdir()) - before
            if streaming:
                break
            await asyncio.sleep(0.02)
        assert len(streaming) == 1
        later = planted(incoming, STALE_S + 1)
        assert await gone(later)  # a pass ran while the upload streams
        assert await gone(planted(incoming, STALE_S + 1))  # ... and another
        assert streaming <= set(incoming.iterdir()) and young.exists() and fresh.exists()
    finally:
        if writer is not None:
            writer.close()
            await writer.wait_closed()
        await server.stop()
