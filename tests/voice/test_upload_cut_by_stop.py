"""An upload still arriving when the server stops is cut without an answer: its request line says
so (499, as nginx logs a request closed before its answer), not 500, an error of the server's own
an operator would go looking for at every deploy."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import start_server
from tests.helpers import RedisProcess
from tests.voice.test_chunks import stalled_upload


async def test_an_upload_cut_by_the_servers_stop_is_logged_499(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sessionhub.request")
    blob_dir = tmp_path / "blobs"
    server = await start_server(redis_process.url, tmp_path, voice_blob_dir=blob_dir)
    writer = None
    try:
        writer = await stalled_upload(server, await server.create_session("alice"))
        incoming = blob_dir / ".incoming"
        for _ in range(200):  # until the server streams the upload into its file
            if incoming.exists() and any(incoming.iterdir()):
                break
            await asyncio.sleep(0.02)
        assert any(incoming.iterdir())
    finally:
        await server.stop()  # its shutdown cancels the upload's handler after its grace
        if writer is not None:
            writer.close()
    lines = [
        r for r in caplog.records if r.name == "sessionhub.request" and getattr(r, "route", "") == "/voicebot/chunks"
    ]
    assert [(r.method, r.status) for r in lines] == [("POST", 499)], [r.getMessage() for r in lines]  # type: ignore[attr-defined]
    assert not any(incoming.iterdir())  # and its temp file is gone with it
