"""The S3 blob store when the bucket hangs: only audio suffers (audit s3field, finding 1).

boto3 blocks a thread for each call. Run on the event loop's default executor (6 threads on a
2-core machine), six calls held by a bucket that never answers stopped every page and static
file of the node, which that executor serves too, for about two minutes. The store has its own
few threads: what cannot have one is refused ``503 unavailable`` at once, with a retry hint.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from auth.claims import Permission
from protocol.errors import CodedError, ErrorCode
from tests.audio_samples import webm
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest, free_port
from tests.voice.s3_faults import HungEndpoint
from tests.voice.test_s3_blobs import BUCKET, s3_client, s3_endpoint  # noqa: F401 (a fixture)
from tests.voice.uploads import chunk_form, upload

pytest.importorskip("boto3", reason="the s3 extra (boto3) is part of the dev extras")

KEYS = {"voice_s3_access_key_id": "test-key", "voice_s3_secret_access_key": "test-secret"}
STORE_LOGGERS = ("handlers.voice.blob_store", "storage.voice.s3_calls")
# asyncio's default executor (what pages and static files are read in): min(32, cpus + 4).
DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)
# More uploads than either pool has threads: before the fix they filled the default one.
UPLOADS = max(8, DEFAULT_THREADS) + 2
PAGE_BOUND_S = 5.0


@pytest_asyncio.fixture
async def hung() -> AsyncIterator[HungEndpoint]:
    endpoint = await HungEndpoint().start()
    yield endpoint
    await endpoint.close()


@pytest_asyncio.fixture
async def node(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, hung: HungEndpoint
) -> AsyncIterator[ServerUnderTest]:
    settings: dict[str, Any] = {
        "voice_blob_store": "s3",
        "voice_s3_bucket": "sessionhub-audio",
        "voice_s3_endpoint_url": hung.url,
        "voice_uploads_in_flight": UPLOADS,
        **KEYS,
    }
    srv = await start_server(redis_process.url, tmp_path, **settings)
    yield srv
    await hung.close()  # the held calls end, so the node's threads do
    await srv.stop()


async def _page(node: ServerUnderTest, path: str) -> int:
    timeout = aiohttp.ClientTimeout(total=PAGE_BOUND_S)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(node.url + path) as response:
        await response.read()
        return response.status


async def _until(predicate: Any, timeout_s: float = 20.0) -> None:
    """Until ``predicate()`` holds (a bound, polled), else fail."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def test_pages_answer_while_uploads_hang_in_the_bucket(node: ServerUnderTest, hung: HungEndpoint) -> None:
    token = node.token("alice")
    session_id = await node.create_session("alice")
    uploads = [asyncio.create_task(upload(node, token, chunk_form(session_id, webm(500 + i)))) for i in range(UPLOADS)]
    # Every upload is held by the bucket or answered; or the default executor is full of them.
    await _until(
        lambda: hung.accepted + sum(task.done() for task in uploads) >= UPLOADS or hung.accepted >= DEFAULT_THREADS
    )
    assert await _page(node, "/static/js/fab.js") == 200
    assert await _page(node, f"/session/{session_id}") == 200

    refused = [task for task in uploads if task.done()]
    assert refused, "every upload was let through to a bucket that hangs"
    for task in refused:
        status, body = task.result()
        assert status == 503 and body["error"] == "unavailable", body
        assert body["retry_after_s"] > 0, body

    await hung.close()  # the bucket cuts them off: the held uploads fail too, none is stored
    for status, body in await asyncio.wait_for(asyncio.gather(*uploads), 60):
        assert status == 503 and body["error"] == "unavailable", body


async def test_a_call_the_bucket_holds_ends_at_its_deadline(hung: HungEndpoint, tmp_path: Path) -> None:
    from storage.voice.blobs import S3BlobStore, S3Settings
    from storage.voice.s3_calls import S3Calls

    settings = S3Settings(
        bucket="sessionhub-audio",
        endpoint_url=hung.url,
        access_key_id=KEYS["voice_s3_access_key_id"],
        secret_access_key=KEYS["voice_s3_secret_access_key"],
    )
    store = S3BlobStore(tmp_path, settings, calls=S3Calls(threads=1, deadline_s=0.5))
    try:
        session_id = "0b5c2f6e-0c3a-4a55-9a43-6f1c1f6b7e10"
        for _ in range(2):  # held past its deadline; then its thread is still taken: refused at once
            with pytest.raises(CodedError) as refused:
                await asyncio.wait_for(store.fetch(session_id, "0" * 64, None), 10)
            assert refused.value.code is ErrorCode.UNAVAILABLE
            assert refused.value.details["retry_after_s"] > 0
        assert hung.accepted == 1
    finally:
        await hung.close()
        store.close()


@pytest.mark.parametrize("fault", ["no_bucket", "no_endpoint"])
async def test_a_bucket_out_of_reach_is_said_at_start_and_uploads_are_503(
    fault: str,
    s3_endpoint: str,  # noqa: F811
    redis: Redis,
    redis_process: RedisProcess,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Audit s3field, finding 2: the node started as if all were well, and every upload was
    ``500 internal_error`` with a boto3 traceback in the log."""
    caplog.set_level(logging.INFO)
    bucket = "no-such-bucket" if fault == "no_bucket" else BUCKET
    endpoint = s3_endpoint if fault == "no_bucket" else f"http://127.0.0.1:{free_port()}"
    settings: dict[str, Any] = {
        "voice_blob_store": "s3",
        "voice_s3_bucket": bucket,
        "voice_s3_endpoint_url": endpoint,
        **KEYS,
    }
    srv = await start_server(redis_process.url, tmp_path, **settings)
    try:

        def said() -> list[str]:
            return [
                record.getMessage()
                for record in caplog.records
                if record.name in STORE_LOGGERS and record.levelno == logging.WARNING
            ]

        await _until(lambda: any(bucket in line and endpoint in line for line in said()))
        session_id = await srv.create_session("alice")
        status, body = await upload(srv, srv.token("alice"), chunk_form(session_id, webm(500)))
        assert status == 503 and body["error"] == "unavailable" and body["retry_after_s"] > 0, body
        assert body["reason"] == "blob_store", body
        tracebacks = [record.getMessage() for record in caplog.records if record.exc_info]
        assert not tracebacks, tracebacks
        assert all("\n" not in line for line in said()), said()
        # The operator's dashboard says it too (only the log did: the alerts said all was well).
        [alert] = [a for a in await alerts(srv) if a["alert"] == "blob_store"]
        assert alert["severity"] == "critical" and bucket in alert["message"], alert
        if fault == "no_bucket":  # made now: the next upload goes through, and the alert goes
            s3_client(s3_endpoint).create_bucket(Bucket=bucket)
            status, body = await upload(srv, srv.token("alice"), chunk_form(session_id, webm(500)))
            assert status == 201, body
            assert not [a for a in await alerts(srv) if a["alert"] == "blob_store"]
    finally:
        await srv.stop()


async def alerts(server: ServerUnderTest) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {server.token('root', perms=(Permission.ADMIN,))}"}
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/admin/alerts", headers=headers) as answer:
        assert answer.status == 200, await answer.text()
        found: list[dict[str, Any]] = (await answer.json())["alerts"]
        return found
