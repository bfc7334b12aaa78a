"""The disk's reserve (handlers/voice/disk_reserve.py): no new audio on a nearly full disk."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from redis.asyncio import Redis

from handlers.voice.disk_reserve import REFRESH_S, DiskReserve
from protocol.errors import CodedError
from tests.audio_samples import wav
from tests.conftest import start_server
from tests.helpers import RedisProcess
from tests.voice.uploads import chunk_form, get_json, upload

GIB = 1024**3


class Disk:
    """A disk whose free bytes the test sets, and a clock the test moves."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.now = 0.0
        self.reads = 0

    def usage(self, _: Path) -> SimpleNamespace:
        self.reads += 1
        return SimpleNamespace(free=self.free)


def test_an_upload_that_would_leave_less_than_the_reserve_is_refused_storage_full(tmp_path: Path) -> None:
    disk = Disk(free=10 * GIB)
    reserve = DiskReserve(tmp_path / "blobs", 9 * GIB, usage=disk.usage, monotonic=lambda: disk.now)
    reserve.admit(GIB - 1)  # leaves 9 GiB + 1 byte
    with pytest.raises(CodedError) as refused:
        reserve.admit(2)  # the first upload is counted until the next reading: 1 byte would be left
    assert (refused.value.code, refused.value.details) == (
        "unavailable",
        {"reason": "storage_full", "retry_after_s": 60},
    )
    assert disk.reads == 1  # one reading stands for REFRESH_S
    disk.now += REFRESH_S
    disk.free = 10 * GIB  # the reading sees what was written, or deleted
    reserve.admit(GIB)
    assert disk.reads == 2


def test_no_reserve_admits_everything_and_an_unreadable_disk_leaves_it_to_the_write(tmp_path: Path) -> None:
    disk = Disk(free=0)
    DiskReserve(tmp_path, 0, usage=disk.usage).admit(10 * GIB)
    assert disk.reads == 0

    def unreadable(_: Path) -> SimpleNamespace:
        raise PermissionError("no statvfs here")

    DiskReserve(tmp_path / "not" / "made" / "yet", GIB, usage=unreadable).admit(GIB)


async def test_a_chunk_on_a_nearly_full_disk_is_refused_before_its_body_and_stored_once_there_is_room(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path
) -> None:
    # The reserve above this disk's free bytes: every upload would leave less than it.
    free = shutil.disk_usage(tmp_path).free
    full = await start_server(redis_process.url, tmp_path, voice_disk_reserve_bytes=free + 1024 * GIB)
    roomy = await start_server(redis_process.url, tmp_path, voice_disk_reserve_bytes=1)
    try:
        session_id = await full.create_session("alice")
        token = full.token("alice")
        audio = wav(4000)
        status, body = await upload(full, token, chunk_form(session_id, audio))
        assert (status, body["error"], body.get("reason"), body.get("retry_after_s")) == (
            503,
            "unavailable",
            "storage_full",
            60,
        ), body
        blobs = full.services.voice.config.blob_dir
        assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))
        status, listed = await get_json(full, f"/voicebot/sessions/{session_id}/chunks", token)
        assert status == 200 and listed["chunks"] == [], listed
        # Room again (another node, or this one once files were deleted): the same upload is stored.
        status, body = await upload(roomy, token, chunk_form(session_id, audio))
        assert status == 201 and body["chunk_count"] == 1, body
    finally:
        await full.stop()
        await roomy.stop()
