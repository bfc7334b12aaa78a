"""Two processing runs of one session finishing out of order: the later read's digest stays.

A Done's run (J1) reads the session's two chunks and is slow (its transcription, a busy host); a
chunk recorded before the close arrives late, and its re-run (J2) reads all three and finishes
first; then J1 finishes. J1 wrote what it read over J2's result: the digest went from three chunks
back to two and the late chunk's task was dropped, both runs "succeeded" (audit "botflow"). Now
J1 finds a digest of a later read stored, and writes neither its digest nor its tasks.
Real server, real redis-server, a real transcription command that the test holds.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from jobs.processors import DONE_MULTIPROMPT, POST_PROCESS_SESSION
from storage.jobs import Job
from tests.audio_samples import webm
from tests.helpers import Client, RedisProcess
from tests.voice.test_processing import transcribing_server, worker_for
from tests.voice.uploads import chunk_form, upload

# The first transcription asked for (J1's first chunk) waits while HOLD exists; every later one
# (J2's) answers at once. Each chunk's text is a task line naming the chunk's size.
HOLDING = """
import os, sys, time
hold, taken, path = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    os.close(os.open(taken, os.O_CREAT | os.O_EXCL))
    first = True
except FileExistsError:
    first = False
deadline = time.monotonic() + 60
while first and os.path.exists(hold) and time.monotonic() < deadline:
    time.sleep(0.02)
print("TODO: file the chunk of", os.path.getsize(path), "bytes")
"""


# The second run: a late chunk's re-run (it stores tasks too), or a process press (a digest only:
# superseded by it, the Done stored no tasks at all; audit "verify43"). The Done's own tasks (one
# per chunk it read) are stored either way, with the re-run's.
SECOND_RUNS = {
    "late-chunk": (DONE_MULTIPROMPT, {"late_chunks": True}, 3),
    "process": (POST_PROCESS_SESSION, {}, None),
}


@pytest.mark.parametrize("second_run", list(SECOND_RUNS))
async def test_a_run_that_read_fewer_chunks_finishing_last_leaves_the_later_runs_digest(
    redis_process: RedisProcess, tmp_path: Path, clients: list[Client], second_run: str
) -> None:
    job_type, payload, tasks_after_second = SECOND_RUNS[second_run]
    hold, taken = tmp_path / "hold", tmp_path / "taken"
    script = tmp_path / "holding.py"
    script.write_text(HOLDING)
    command = f"{sys.executable} {script} {hold} {taken} {{path}}"
    server = await transcribing_server(redis_process, tmp_path / "server", command)
    try:
        token = server.token("alice")
        session_id = await server.create_session("alice")
        for n, size_ms in enumerate((1200, 1300)):
            form = chunk_form(session_id, webm(size_ms), start_ms=n * 2000, end_ms=n * 2000 + size_ms)
            status, body = await upload(server, token, form)
            assert status == 201, body
        jobs = server.services.jobs
        await jobs.ensure_group()
        hold.touch()
        await jobs.enqueue(Job(type=DONE_MULTIPROMPT, session_id=session_id, performer_id="alice"))
        first = asyncio.create_task(worker_for(server).run_once(block_ms=1))  # J1, held in its transcription
        while not taken.exists():
            await asyncio.sleep(0.02)

        late_form = chunk_form(session_id, webm(1400), start_ms=4000, end_ms=5400)
        status, body = await upload(server, token, late_form)  # the late chunk
        assert status == 201, body
        await jobs.enqueue(Job(type=job_type, session_id=session_id, performer_id="alice", payload=payload))
        second = worker_for(server)
        while not await second.run_once(block_ms=1):  # J2: reads three chunks, finishes first
            pass
        after_second = await server.services.voice.get(session_id)
        assert after_second is not None and after_second.digest is not None
        assert after_second.digest["chunk_count"] == 3
        assert (len(after_second.tasks) if after_second.tasks is not None else None) == tasks_after_second

        hold.unlink()  # J1 goes on, and finishes last
        assert await asyncio.wait_for(first, 30) == 1
        session = await server.services.voice.get(session_id)
        assert session is not None and session.digest is not None
        assert session.digest["chunk_count"] == 3, session.digest  # not J1's two
        # The late chunk's task kept, and the Done's own stored (2 of its chunks: 2 tasks).
        assert len(session.tasks or []) == (tasks_after_second or 2), session.tasks
        record = await server.services.redis.hgetall(server.services.keys.session(session_id))
        assert json.loads(record["digest"])["chunk_count"] == 3
    finally:
        await server.stop()
