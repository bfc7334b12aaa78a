"""Audio any node can serve (issue 24, item 4): the S3 blob store, against a real S3-protocol
server on loopback (moto's server, started here: see README "Audio on several nodes").

A chunk uploaded on one node is played through a signed link of another node (ranges too),
transcribed by a Done job processed on that other node, and removed from the bucket with its
session.
"""

from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from handlers.voice.chunks import chunk_repository
from storage.jobs import Job
from tests.audio_samples import wav, webm
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest, free_port
from tests.voice.test_processing import SCRIPT, run_jobs
from tests.voice.uploads import chunk_form, get_json, upload

BUCKET = "sessionhub-audio"
KEYS = {"voice_s3_access_key_id": "test-key", "voice_s3_secret_access_key": "test-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-protocol server on a loopback port, with the bucket made."""
    boto3 = pytest.importorskip("boto3", reason="the s3 extra (boto3) is part of the dev extras")
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is part of the dev extras")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEYS["voice_s3_access_key_id"],
        aws_secret_access_key=KEYS["voice_s3_secret_access_key"],
    )
    client.create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEYS["voice_s3_access_key_id"],
        aws_secret_access_key=KEYS["voice_s3_secret_access_key"],
    )


def objects(endpoint: str, prefix: str) -> list[str]:
    listing = s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


@pytest_asyncio.fixture
async def two_nodes(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, s3_endpoint: str
) -> AsyncIterator[list[ServerUnderTest]]:
    """Two nodes on one Redis and one bucket, each with its own data folder (no shared disk)."""
    settings: dict[str, Any] = {
        "voice_blob_store": "s3",
        "voice_s3_bucket": BUCKET,
        "voice_s3_endpoint_url": s3_endpoint,
        "voice_s3_prefix": f"{tmp_path.name}/",
        "voice_transcribe_command": f'{sys.executable} -c "{SCRIPT}" {{path}}',
        **KEYS,
    }
    nodes = [await start_server(redis_process.url, tmp_path / f"node{i}", **settings) for i in range(2)]
    yield nodes
    for node in nodes:
        await node.stop()


async def test_audio_uploaded_on_one_node_is_served_and_transcribed_by_another(
    two_nodes: list[ServerUnderTest], s3_endpoint: str, tmp_path: Path
) -> None:
    taking, other = two_nodes
    token = taking.token("alice")
    session_id = await taking.create_session("alice")
    audio = webm(500)
    status, body = await upload(taking, token, chunk_form(session_id, audio))
    assert status == 201, body
    assert not any((tmp_path / "node0" / "blobs").rglob(body["chunk"]["sha256"]))  # nothing kept on disk

    status, listing = await get_json(other, f"/voicebot/sessions/{session_id}/chunks", other.token("alice"))
    assert status == 200, listing
    link = listing["chunks"][0]["audio_url"]
    path = link[link.index("/voicebot/") :]
    async with aiohttp.ClientSession() as http:
        async with http.get(other.url + path) as response:
            assert response.status == 200
            assert await response.read() == audio
        async with http.get(other.url + path, headers={"Range": "bytes=10-19"}) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes 10-19/{len(audio)}"
            assert await response.read() == audio[10:20]

    await other.services.jobs.enqueue(Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice"))
    await run_jobs(other)  # the other node's worker: the audio comes from the bucket
    chunk = await chunk_repository(other.services).get(session_id, "ch000001")
    assert chunk is not None
    assert chunk["transcript"] == f"TODO: listen to {len(audio)} bytes", chunk

    prefix = f"{tmp_path.name}/{session_id}/"
    assert objects(s3_endpoint, prefix) == [prefix + body["chunk"]["sha256"]]
    async with (
        aiohttp.ClientSession() as http,
        http.delete(
            f"{other.url}/voicebot/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
    assert objects(s3_endpoint, prefix) == []  # the deletion went through the store too


async def test_a_chunk_near_the_cap_goes_up_in_one_put_with_its_type(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, s3_endpoint: str
) -> None:
    """Audit s3field, finding 8: a chunk of 8 MiB or more went up as a multipart upload (whose
    parts a failing bucket may keep, billed), and no object had a content type."""
    node = await start_server(
        redis_process.url,
        tmp_path,
        voice_blob_store="s3",
        voice_s3_bucket=BUCKET,
        voice_s3_endpoint_url=s3_endpoint,
        voice_s3_prefix=f"{tmp_path.name}/",
        **KEYS,
    )
    try:
        audio = wav(50_000, rate=96_000)
        assert 8 * 1024 * 1024 < len(audio) < node.services.voice.config.max_chunk_bytes
        session_id = await node.create_session("alice")
        form = aiohttp.FormData()
        for name, value in (
            ("session_id", session_id),
            ("start_ms", "0"),
            ("end_ms", "50000"),
            ("duration_ms", "50000"),
        ):
            form.add_field(name, value)
        form.add_field("file", io.BytesIO(audio), filename="chunk.wav", content_type="audio/wav")  # big: not raw bytes
        status, body = await upload(node, node.token("alice"), form)
        assert status == 201, body
        key = f"{tmp_path.name}/{session_id}/{body['chunk']['sha256']}"
        stored = s3_client(s3_endpoint).head_object(Bucket=BUCKET, Key=key)
        assert "-" not in stored["ETag"], stored["ETag"]  # a multipart upload's ETag is "<md5>-<parts>"
        assert stored["ContentLength"] == len(audio)
        assert stored["ContentType"] == body["chunk"]["mime"] == "audio/wav"
    finally:
        await node.stop()
