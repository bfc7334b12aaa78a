"""`sessionhub worker` as a process: started before its Redis, it waits for it, then works."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from server.services import connect_redis
from storage.clock import Clock
from storage.jobs import Job, JobQueue
from storage.keys import Keys
from tests.helpers import CHILD_TEST_TIMEOUT_S, RedisProcess, free_port
from tests.test_processes import ROOT, node_env

pytestmark = pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)


async def _until(predicate_s: str, path: Path, proc: subprocess.Popen[bytes], bound_s: float = 60) -> None:
    """Until ``path`` contains ``predicate_s`` (bounded; fails early if the process ended)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while predicate_s not in path.read_text(errors="replace"):
        assert proc.poll() is None, f"the worker exited ({proc.returncode}):\n{path.read_text(errors='replace')}"
        assert loop.time() < deadline, f"{predicate_s!r} never came:\n{path.read_text(errors='replace')}"
        await asyncio.sleep(0.05)


async def test_a_worker_started_before_its_redis_waits_for_it_then_works(tmp_path: Path) -> None:
    redis_process = RedisProcess(tmp_path / "redis")  # its port is chosen now, started later
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-m", "server", "worker"],
            cwd=ROOT,
            env=node_env(tmp_path / "w", redis_process.url),
            stdout=stdout,
            stderr=stderr,
        )
    try:
        await _until("retrying in", err, worker)  # it said why it waits, and is still there
        assert "cannot reach Redis" in err.read_text()
        redis_process.start()
        await _until("running", out, worker)
        redis = connect_redis(redis_process.url)
        try:
            jobs = JobQueue(redis=redis, keys=Keys("sh"), clock=Clock())
            await jobs.enqueue(Job(type="NOPE", session_id="s1", performer_id="alice"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not await redis.llen(Keys("sh").jobs_dead()):  # taken, and dead-lettered: no processor
                assert worker.poll() is None and loop.time() < deadline, err.read_text()
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
    finally:
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
        redis_process.stop()
    assert code == 0


async def test_a_worker_waits_for_serve_to_record_its_embedded_redis(tmp_path: Path) -> None:
    """No REDIS_URL and no serve yet: it waits (saying where it looks), and SIGTERM ends it cleanly."""
    err = tmp_path / "worker.err"
    with err.open("wb") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-m", "server", "worker"],
            cwd=ROOT,
            env=node_env(tmp_path / "w", None),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        await _until("no serve has recorded an embedded Redis", err, worker)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
    assert code == 0


async def test_a_worker_says_at_its_start_that_the_bucket_is_out_of_reach(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    """A worker of its own (no node in the process) said nothing of a bucket it cannot reach until
    its jobs failed; a node says it at its start, and so does a worker now."""
    pytest.importorskip("boto3", reason="the s3 extra (boto3) is part of the dev extras")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    s3 = {
        "SESSIONHUB_VOICE_BLOB_STORE": "s3",
        "SESSIONHUB_VOICE_S3_BUCKET": "audio-of-the-worker",
        "SESSIONHUB_VOICE_S3_ENDPOINT_URL": endpoint,
        "SESSIONHUB_VOICE_S3_ACCESS_KEY_ID": "test-key",
        "SESSIONHUB_VOICE_S3_SECRET_ACCESS_KEY": "test-secret",
    }
    with out.open("wb") as stdout, err.open("wb") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-m", "server", "worker"],
            cwd=ROOT,
            env=node_env(tmp_path / "w", redis_process.url, **s3),
            stdout=stdout,
            stderr=stderr,
        )
    try:
        await _until("audio-of-the-worker", err, worker)
        [line] = [line for line in err.read_text().splitlines() if "audio-of-the-worker" in line]
        assert "worker:" in line and endpoint in line, line
        assert "test-secret" not in err.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
    assert code == 0
