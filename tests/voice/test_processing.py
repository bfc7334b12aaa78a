"""Post-processing that does real work: digest, task rules, the transcription hook, progress events."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from handlers.voice.chunks import chunk_repository
from jobs.processors import BUILT_IN
from jobs.transcription import NOT_CONFIGURED, command_line
from jobs.voice_digest import digest, extract_tasks
from protocol.events import JOB_PROGRESS
from server.worker import Worker
from storage.jobs import Job
from storage.voice.repository import KEEP_LAST_JOB
from tests.audio_samples import ogg_opus, webm
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.patterns.test_events import new_pattern
from tests.voice.uploads import chunk_form, upload

SCRIPT = "import os, sys; print('TODO: listen to', os.path.getsize(sys.argv[1]), 'bytes')"


def worker_for(server: ServerUnderTest) -> Worker:
    return Worker(
        services=server.services, processors=dict(BUILT_IN), max_attempts=2, backoff_base_ms=1, visibility_ms=60_000
    )


async def run_jobs(server: ServerUnderTest) -> None:
    await server.services.jobs.ensure_group()
    worker = worker_for(server)
    for _ in range(20):
        if not await worker.run_once(block_ms=1):
            return


async def transcribing_server(redis_process: RedisProcess, tmp_path: Path, command: str, **kw: Any) -> ServerUnderTest:
    return await start_server(redis_process.url, tmp_path, voice_transcribe_command=command, **kw)


@pytest_asyncio.fixture
async def transcriber(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    srv = await transcribing_server(redis_process, tmp_path, f'{sys.executable} -c "{SCRIPT}" {{path}}')
    yield srv
    await srv.stop()


# --- the rules, as pure functions ------------------------------------------------------------


def test_task_rules() -> None:
    text = "\n".join(
        [
            "Notes from the call",
            "TODO: send the invoice",
            "  - [ ] book the room",
            "- [x] already done",
            "Action item: update the wiki",
            "Задача: позвонить Ивану",
            "please review the draft",
            "todo",  # a marker without a task
            "the TODO list is long",  # not at the start
        ]
    )
    assert extract_tasks(text) == [
        ("todo", 2, "send the invoice"),
        ("checkbox", 3, "book the room"),
        ("marker", 5, "update the wiki"),
        ("marker", 6, "позвонить Ивану"),
        ("imperative", 7, "please review the draft"),
    ]


def test_digest_counts_durations_speakers_and_texts_in_order() -> None:
    materials = [
        {"material_id": "m1", "kind": "text", "text": "first", "added_at": 1},
        {"material_id": "m2", "kind": "voice", "file_id": "f", "duration_s": 2.5},
        {"material_id": "m3", "kind": "text", "text": "second", "added_at": 3},
        {"material_id": "m4", "kind": "photo", "file_id": "p"},
    ]
    chunks = [
        {
            "chunk_id": "ch000001",
            "speaker": "Ann",
            "duration_ms": 1000,
            "size_bytes": 10,
            "start_ms": 5,
            "end_ms": 1005,
        },
        {"chunk_id": "ch000002", "speaker": "", "duration_ms": 500, "size_bytes": 5, "start_ms": 2000, "end_ms": 2500},
        {
            "chunk_id": "ch000003",
            "speaker": "Ann",
            "duration_ms": 250,
            "size_bytes": 1,
            "start_ms": 3000,
            "end_ms": 3250,
            "transcript": "hi",
        },
    ]
    result = digest(materials, chunks, transcription="x")
    assert (result["chunk_count"], result["audio_ms"], result["storage_bytes"]) == (3, 1750, 16)
    assert (result["first_chunk_start_ms"], result["last_chunk_end_ms"]) == (5, 3250)
    assert result["speakers"] == [
        {"speaker": "Ann", "chunks": 2, "audio_ms": 1250},
        {"speaker": "", "chunks": 1, "audio_ms": 500},
    ]
    assert result["materials_by_kind"] == {"voice": 1, "text": 2, "photo": 1, "document": 0}
    assert result["material_voice_s"] == 2.5
    assert [t["text"] for t in result["texts"]] == ["first", "second"]
    assert result["transcripts"] == [{"chunk_id": "ch000003", "text": "hi"}]


def test_command_line_placeholders() -> None:
    path = Path("/data/a b/x")
    assert command_line("whisper --model tiny", path, "audio/webm") == ["whisper", "--model", "tiny", "/data/a b/x"]
    assert command_line("tool -i {path} -t {mime}", path, "audio/ogg") == [
        "tool",
        "-i",
        "/data/a b/x",
        "-t",
        "audio/ogg",
    ]


# --- the jobs, through a real worker ------------------------------------------------------------


async def get_session_json(server: ServerUnderTest, token: str, session_id: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(f"{server.url}/voicebot/sessions/{session_id}") as response,
    ):
        return response.status, await response.json()


async def test_only_a_voice_session_keeps_a_jobs_last_word(server: ServerUnderTest) -> None:
    """The job step kept in the record is a voice session's field: another kind's record (a
    pattern's state is split into its fields) is never written."""
    services = server.services
    voice = await server.create_session("alice")
    step = {"job_id": "j1", "job_type": "done_multiprompt", "step": "transcribe", "done": 1, "total": 2}
    await services.log.append_kept(services.scripts.append_kept, voice, JOB_PROGRESS, step, **KEEP_LAST_JOB)
    session = await services.voice.get(voice)
    assert session is not None and session.last_job is not None
    assert {k: session.last_job[k] for k in step} == step
    pattern = await new_pattern(server)
    before = await services.redis.hgetall(services.keys.session(pattern))
    await services.log.append_kept(services.scripts.append_kept, pattern, JOB_PROGRESS, step, **KEEP_LAST_JOB)
    assert await services.redis.hgetall(services.keys.session(pattern)) == before


async def test_post_process_digests_and_says_transcription_is_not_configured(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    token = server.token("alice")
    await upload(server, token, chunk_form(session_id, webm(1200), speaker="Ann", start_ms=10, end_ms=1210))
    await upload(server, token, chunk_form(session_id, ogg_opus(800), speaker="Bob", start_ms=2000, end_ms=2800))
    await server.services.voice.add_material(
        session_id, {"material_id": "m1", "kind": "text", "text": "agenda"}, max_count=10
    )
    watcher = await server.subscriber(clients, session_id)
    ack = await watcher.call("post_process_session", {"session_id": session_id})
    await run_jobs(server)

    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    result = watcher.named("job_result")[0]["data"]
    assert result["status"] == "succeeded" and result["job_id"] == ack["job_id"]
    assert result["result"]["transcription"] == NOT_CONFIGURED
    progress = [(e["data"]["step"], e["data"]["done"], e["data"]["total"]) for e in watcher.named("job_progress")]
    assert progress == [("queued", 0, 0), ("digest", 1, 1)]  # said queued as the press was answered
    session = await server.services.voice.get(session_id)
    assert session is not None and session.digest is not None
    assert (session.digest["chunk_count"], session.digest["audio_ms"]) == (2, 2000)
    assert [s["speaker"] for s in session.digest["speakers"]] == ["Ann", "Bob"]
    assert [t["text"] for t in session.digest["texts"]] == ["agenda"]
    [update] = [e["data"] for e in watcher.named("session_update") if "digest" in e["data"]]
    assert update["digest"] == session.digest
    # The record keeps the job's last word, for a page opened after it (or while it runs).
    assert session.last_job is not None
    assert {k: session.last_job[k] for k in ("job_id", "status")} == {"job_id": ack["job_id"], "status": "succeeded"}
    assert isinstance(session.last_job["at"], int)


async def test_done_transcribes_each_chunk_and_links_tasks_to_chunks(
    transcriber: ServerUnderTest, clients: list[Client]
) -> None:
    server = transcriber
    session_id = await server.create_session("alice")
    token = server.token("alice")
    audio = [webm(600), webm(900)]
    for i, data in enumerate(audio):
        assert (await upload(server, token, chunk_form(session_id, data, start_ms=i * 1000, end_ms=i * 1000 + 900)))[
            0
        ] == 201
    await server.services.voice.add_material(
        session_id, {"material_id": "m1", "kind": "text", "text": "- [ ] share notes"}, max_count=10
    )
    watcher = await server.subscriber(clients, session_id)
    await watcher.call("session_done", {"session_id": session_id})
    await run_jobs(server)

    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    result = watcher.named("job_result")[0]["data"]["result"]
    assert result["transcription"] == "2 of 2 chunks transcribed" and result["task_count"] == 3
    updated = {e["data"]["chunk"]["chunk_id"]: e["data"]["chunk"]["transcript"] for e in watcher.named("chunk_updated")}
    assert updated == {
        "ch000001": f"TODO: listen to {len(audio[0])} bytes",
        "ch000002": f"TODO: listen to {len(audio[1])} bytes",
    }
    steps = [(e["data"]["step"], e["data"]["done"]) for e in watcher.named("job_progress")]
    assert steps == [("queued", 0), ("transcribe", 1), ("transcribe", 2), ("digest", 1), ("tasks", 1)]
    status, body = await get_session_json(server, token, session_id)
    assert status == 200 and body["last_job"]["status"] == "succeeded", body
    session = await server.services.voice.get(session_id)
    assert session is not None and session.tasks is not None
    assert sorted((t["chunk_id"], t["source"], t["text"]) for t in session.tasks) == [
        ("ch000001", "chunk", f"listen to {len(audio[0])} bytes"),
        ("ch000002", "chunk", f"listen to {len(audio[1])} bytes"),
        ("m1", "material", "share notes"),
    ]
    # Running it again finds the same tasks: none is added twice.
    await watcher.call("create_tasks_from_chunks", {"session_id": session_id, "chunk_ids": ["ch000001", "m1"]})
    await run_jobs(server)
    again = await server.services.voice.get(session_id)
    assert again is not None and again.tasks is not None and len(again.tasks) == 3


async def test_progress_counts_the_chunks_transcribed_before(
    transcriber: ServerUnderTest, clients: list[Client]
) -> None:
    """A run that finds chunks already transcribed (a retry, a late chunk's run) counted only those
    left: "1/7", then "1/6", as if the work had shrunk (audit "botflow")."""
    server = transcriber
    session_id = await server.create_session("alice")
    token = server.token("alice")
    for i in range(3):
        form = chunk_form(session_id, webm(500 + i), start_ms=i * 1000, end_ms=i * 1000 + 500)
        assert (await upload(server, token, form))[0] == 201
    await chunk_repository(server.services).annotate(
        session_id, "ch000001", {"transcript": "done before", "transcript_error": ""}
    )
    watcher = await server.subscriber(clients, session_id)
    await server.services.jobs.enqueue(Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice"))
    await run_jobs(server)
    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    steps = [(e["data"]["step"], e["data"]["done"], e["data"]["total"]) for e in watcher.named("job_progress")]
    assert steps[:2] == [("transcribe", 2, 3), ("transcribe", 3, 3)], steps


@pytest.mark.parametrize(
    ("command", "timeout_s", "error"),
    [
        (
            f"{sys.executable} -c \"import sys; sys.stderr.write('cannot open /srv/secret on 10.0.0.7'); sys.exit(3)\"",
            30.0,
            "exited with 3",
        ),
        (f'{sys.executable} -c "import time; time.sleep(30)"', 0.5, "longer than 0.5 s"),
        ("/nonexistent/transcriber", 30.0, "cannot run"),
    ],
)
async def test_a_failing_transcriber_marks_the_chunk_and_the_job_goes_on(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, command: str, timeout_s: float, error: str
) -> None:
    server = await transcribing_server(redis_process, tmp_path, command, voice_transcribe_timeout_s=timeout_s)
    try:
        session_id = await server.create_session("alice")
        await upload(server, server.token("alice"), chunk_form(session_id, webm(500)))
        await server.services.jobs.enqueue(
            Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice")
        )
        await run_jobs(server)
        session = await server.services.voice.get(session_id)
        assert session is not None and session.digest is not None
        assert session.digest["transcription"] == "0 of 1 chunks transcribed, 1 failed"
        chunk = await chunk_repository(server.services).get(session_id, "ch000001")
        assert error in chunk["transcript_error"] and chunk["transcript"] == ""
        # The command's own words go to the log, not to the session's clients (audit "verify47").
        assert "/srv/secret" not in chunk["transcript_error"], chunk
    finally:
        await server.stop()


async def test_a_job_time_limit_under_the_transcriptions_fails_a_slow_chunk_not_the_job(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, clients: list[Client]
) -> None:
    """With SESSIONHUB_JOB_TIMEOUT_S under SESSIONHUB_VOICE_TRANSCRIBE_TIMEOUT_S, a slow chunk was
    cut by the job's limit: every attempt alike, and the Done dead-lettered with nothing kept
    (audit "jobsreal"). Its transcription is bounded by the job's time left instead."""
    slow = f'{sys.executable} -c "import time; time.sleep(60)" {{path}}'
    server = await transcribing_server(redis_process, tmp_path, slow, voice_transcribe_timeout_s=120)
    try:
        session_id = await server.create_session("alice")
        token = server.token("alice")
        assert (await upload(server, token, chunk_form(session_id, webm(600), start_ms=0, end_ms=600)))[0] == 201
        watcher = await server.subscriber(clients, session_id)
        await watcher.call("session_done", {"session_id": session_id})
        await server.services.jobs.ensure_group()
        worker = Worker(
            services=server.services,
            processors=dict(BUILT_IN),
            max_attempts=2,
            backoff_base_ms=1,
            visibility_ms=60_000,
            timeout_s=2.0,
        )
        for _ in range(5):
            if not await worker.run_once(block_ms=1):
                break
        await watcher.wait_for(lambda: bool(watcher.named("job_result")))
        [result] = [e["data"] for e in watcher.named("job_result")]  # no attempt cut by the job's limit
        assert result["status"] == "succeeded", result
        assert result["result"]["transcription"] == "0 of 1 chunks transcribed, 1 failed", result
        session = await server.services.voice.get(session_id)
        assert session is not None and session.digest is not None and session.tasks is not None
        assert (await server.services.jobs.counts())["dead"] == 0
    finally:
        await server.stop()
