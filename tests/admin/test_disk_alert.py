"""The operator hears of a disk short of the upload reserve: a warning at start, the ``disk``
alert on /admin/alerts and the /admin page's metrics, and the refused uploads counted in
/metrics (every chunk upload was refused ``503 storage_full`` while all of them said nothing)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from prometheus_client import Counter, CollectorRegistry
from redis.asyncio import Redis

from handlers.disk_room import DiskRoom
from tests.admin.test_http import admin_token
from tests.audio_samples import wav
from tests.conftest import start_server
from tests.helpers import RedisProcess
from tests.voice.uploads import chunk_form, upload

MIB = 1024 * 1024


async def _get(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, str]:
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.text()


async def test_a_reserve_larger_than_the_disk_is_said_at_start_alerted_and_counted(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    total = shutil.disk_usage(tmp_path).total
    with caplog.at_level(logging.WARNING, logger="handlers.disk_room"):
        server = await start_server(redis_process.url, tmp_path, voice_disk_reserve_bytes=total + 1)
    try:
        said = [r.getMessage() for r in caplog.records if r.name == "handlers.disk_room"]
        assert len(said) == 1 and said[0].startswith("Storage approaching limit"), said  # audio and data: one disk
        assert "larger than the whole disk" in said[0] and "SESSIONHUB_VOICE_DISK_RESERVE_BYTES" in said[0]
        session_id = await server.create_session("alice")
        status, body = await upload(server, server.token("alice"), chunk_form(session_id, wav(4000)))
        assert (status, body.get("reason")) == (503, "storage_full"), body
        token = admin_token(server)
        async with aiohttp.ClientSession() as http:
            status, text = await _get(http, server.url + "/admin/alerts", token)
            assert status == 200, text
            alerts = {a["alert"]: a for a in json.loads(text)["alerts"]}
            disk = alerts["disk"]
            assert disk["severity"] == "critical" and disk["message"].startswith("Storage approaching limit"), disk
            assert (disk["folders"], disk["reserve_bytes"], disk["total_bytes"]) == (
                ["audio", "data"],
                total + 1,
                total,
            ), disk
            status, text = await _get(http, server.url + "/admin/metrics", token)  # what the /admin page shows
            assert status == 200 and "disk" in {a["alert"] for a in json.loads(text)["alerts"]}, text
            status, text = await _get(http, server.url + "/metrics", token)
            assert 'sessionhub_disk_refusals_total{cause="reserve"} 1.0' in text, text
            assert 'sessionhub_alerts{alert="disk"} 1.0' in text
    finally:
        await server.stop()


def test_a_disk_with_less_free_than_the_reserve_is_short_and_one_with_more_is_not(tmp_path: Path) -> None:
    audio, data = tmp_path / "blobs", tmp_path / "var"  # not made yet: their nearest parent is read
    refusals = Counter("refusals", "", ["cause"], registry=CollectorRegistry())

    def usage(free: int) -> object:
        return lambda _: SimpleNamespace(free=free, total=100 * MIB)

    room = DiskRoom({"audio": audio, "data": data}, 10 * MIB, refusals=refusals, usage=usage(9 * MIB))
    [short] = room.shortfalls()
    assert short.folders == ("audio", "data") and short.free_bytes == 9 * MIB
    assert "has 9.0 MiB free of 100.0 MiB, under the reserve of 10.0 MiB" in short.message(), short.message()
    assert DiskRoom({"audio": audio}, 10 * MIB, refusals=refusals, usage=usage(10 * MIB)).shortfalls() == []
    assert DiskRoom({"audio": audio}, 0, refusals=refusals, usage=usage(0)).shortfalls() == []  # no reserve
