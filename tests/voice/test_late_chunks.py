"""Late chunks: audio recorded while a session was open, uploaded after it closed.

A phone records, goes offline, and the person presses Done on the laptop; or a recorder hears
of a Done elsewhere only after it. Each chunk it then uploaded was refused ``invalid_state``
(a closed session), audio recorded before the close included: the person lost it. Now a closed
session takes a chunk started before its close, within ``SESSIONHUB_VOICE_LATE_CHUNKS_S`` of
the close, and its post-processing runs again (queued once while a run waits)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.voice.actions import DONE_MULTIPROMPT
from storage.jobs import Job
from storage.voice.chunks import LATE_CHUNK_SKEW_MS
from tests.audio_samples import ogg_opus, webm
from tests.helpers import Client, ServerUnderTest
from tests.voice.test_chunks import blob_files, performer_of
from tests.voice.test_processing import run_jobs
from tests.voice.uploads import chunk_form, upload

pytestmark = pytest.mark.timeout(60)


async def queued_jobs(server: ServerUnderTest) -> list[Job]:
    """The jobs in the stream, oldest first (the test servers run no worker of their own)."""
    entries: Any = await server.services.redis.xrange(server.services.keys.jobs())
    return [Job.from_json(fields["job"]) for _, fields in entries]


async def closed_session(server: ServerUnderTest, user: str = "alice") -> tuple[str, int]:
    """A session of ``user`` with one chunk, closed by Done (its job run); (its id, closed_at)."""
    session_id = await server.create_session(user)
    now = server.services.clock.now_ms()
    assert (await upload(server, server.token(user), recorded(now - 1000, webm(1000), session_id)))[0] == 201
    await server.services.voice.done(session_id, performer_of(user))
    await server.services.jobs.enqueue(Job(type=DONE_MULTIPROMPT, session_id=session_id, performer_id=user))
    await run_jobs(server)
    assert await queued_jobs(server) == []
    session = await server.services.voice.get(session_id)
    assert session is not None and session.closed_at is not None and session.status == "closed"
    return session_id, session.closed_at


def recorded(start_ms: int, audio: bytes, session_id: str) -> Any:
    return chunk_form(session_id, audio, start_ms=start_ms, end_ms=start_ms + 1000)


async def test_a_chunk_recorded_before_the_close_is_taken_after_it_and_processed_again(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, closed_at = await closed_session(server)
    watcher = await server.subscriber(clients, session_id)
    token = server.token("alice")

    status, body = await upload(server, token, recorded(closed_at - 3000, ogg_opus(1500), session_id))

    assert status == 201, body
    assert body["late"] is True and body["duplicate"] is False and body["chunk_count"] == 2
    await watcher.wait_for(lambda: len(watcher.named("new_message")) == 1)
    event = watcher.named("new_message")[0]["data"]
    assert event["late"] is True and event["chunk"] == body["chunk"]
    [job] = await queued_jobs(server)
    assert (job.type, job.session_id, job.performer_id) == (DONE_MULTIPROMPT, session_id, "alice")
    assert job.payload["late_chunks"] is True
    # A second late chunk while that run waits: the run does both, no second job.
    status, body = await upload(server, token, recorded(closed_at - 2000, webm(700), session_id))
    assert status == 201 and body["late"] is True
    assert [j.job_id for j in await queued_jobs(server)] == [job.job_id]
    # The person made another session active meanwhile: the re-run leaves their pointer alone.
    other = await server.create_session("alice")
    await server.services.voice.set_active("alice", other)

    await run_jobs(server)

    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    result = watcher.named("job_result")[0]["data"]
    assert (result["job_id"], result["status"]) == (job.job_id, "succeeded")
    assert result["result"]["chunk_count"] == 3 and result["result"]["active_session_cleared"] is False
    session = await server.services.voice.get(session_id)
    assert session is not None and session.digest is not None and session.digest["chunk_count"] == 3
    assert (session.status, session.closed_at, session.done_count) == ("closed", closed_at, 1)
    assert await server.services.voice.active_id("alice") == other
    # Once that run has started, the next late chunk queues a run of its own.
    assert (await upload(server, token, recorded(closed_at - 1000, webm(900), session_id)))[0] == 201
    [again] = await queued_jobs(server)
    assert again.job_id != job.job_id and again.payload["late_chunks"] is True


async def test_a_chunk_recorded_after_the_close_is_refused(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, closed_at = await closed_session(server)
    watcher = await server.subscriber(clients, session_id)
    token = server.token("alice")
    files = blob_files(server)

    after = await upload(server, token, recorded(closed_at + LATE_CHUNK_SKEW_MS, webm(600), session_id))
    # A start that is no unix time (a client counting from its recording's start) is no late chunk.
    relative = await upload(server, token, recorded(1000, webm(800), session_id))

    assert after[0] == 409 and after[1]["error"] == "invalid_state"
    assert relative[0] == 409 and relative[1]["error"] == "invalid_state"
    # Said in words a bot can act on, not the generic "not allowed in the current state" (audit "botflow").
    assert "closed (Done)" in after[1]["message"] and "recorded before its close" in after[1]["message"], after
    session = await server.services.voice.get(session_id)
    assert session is not None and session.chunk_count == 1
    assert blob_files(server) == files and await queued_jobs(server) == []
    # Within the recorder's allowed clock skew, it is taken as recorded before the close.
    skewed = await upload(server, token, recorded(closed_at + LATE_CHUNK_SKEW_MS - 1, webm(900), session_id))
    assert skewed[0] == 201 and skewed[1]["late"] is True
    await watcher.wait_for(lambda: len(watcher.named("new_message")) == 1)
    # Someone else's late chunk is refused as ever: access first.
    foreign = await upload(server, server.token("mallory"), recorded(closed_at - 1000, webm(700), session_id))
    assert foreign[0] == 403 and foreign[1]["error"] == "forbidden"


async def test_a_retry_of_a_late_chunk_is_the_stored_chunk(server: ServerUnderTest) -> None:
    session_id, closed_at = await closed_session(server)
    token = server.token("alice")
    audio = ogg_opus(1200)
    first = await upload(server, token, recorded(closed_at - 5000, audio, session_id))
    assert first[0] == 201

    again = await upload(server, token, recorded(closed_at - 5000, audio, session_id))

    assert again[0] == 200 and again[1]["duplicate"] is True and again[1]["late"] is True
    assert again[1]["chunk"] == first[1]["chunk"] and again[1]["chunk_count"] == 2
    assert len(await queued_jobs(server)) == 1  # the run that waits does it
    # A first try that stored the chunk and died before queueing its run: the retry queues it.
    await server.services.redis.delete(server.services.keys.jobs())
    await server.services.redis.delete(server.services.keys.jobs_waiting(f"late_chunks:{session_id}"))
    retried = await upload(server, token, recorded(closed_at - 5000, audio, session_id))
    assert retried[0] == 200 and retried[1]["late"] is True
    [job] = await queued_jobs(server)
    assert job.payload["late_chunks"] is True
    # A chunk stored while the session was open, sent again after the close, is no late chunk.
    chunks: Any = await server.services.redis.hgetall(server.services.keys.voice_chunks(session_id))
    early = json.loads(chunks["ch000001"])
    session = await server.services.voice.get(session_id)
    assert session is not None and session.chunk_count == 2
    assert early["uploaded_at"] <= closed_at


async def test_late_chunks_are_taken_for_a_bounded_time_after_the_close(server: ServerUnderTest) -> None:
    session_id, closed_at = await closed_session(server)
    window_ms = server.services.voice.config.late_chunks_s * 1000
    assert window_ms == 86_400_000  # the default: a day
    kept = ogg_opus(1000)
    clock = server.services.clock
    try:
        clock.shift_ms = closed_at + window_ms - clock.now_ms() - 2000  # ~2 s before the window ends
        token = server.token("alice")  # a day on: a token of then
        within = await upload(server, token, recorded(closed_at - 1000, kept, session_id))
        assert within[0] == 201 and within[1]["late"] is True
        clock.shift_ms += 3000  # past it
        past = await upload(server, token, recorded(closed_at - 2000, webm(800), session_id))
        assert past[0] == 409 and past[1]["error"] == "invalid_state"
        # A retry of one taken is still answered as the stored chunk.
        retry = await upload(server, token, recorded(closed_at - 1000, kept, session_id))
        assert retry[0] == 200 and retry[1]["duplicate"] is True
    finally:
        clock.shift_ms = 0
    session = await server.services.voice.get(session_id)
    assert session is not None and session.chunk_count == 2


async def test_a_zero_window_takes_no_late_chunk(redis: Any, redis_process: Any, tmp_path: Any) -> None:
    from tests.conftest import start_server

    server = await start_server(redis_process.url, tmp_path, voice_late_chunks_s=0)
    try:
        session_id, closed_at = await closed_session(server)
        refused = await upload(server, server.token("alice"), recorded(closed_at - 1000, webm(700), session_id))
        assert refused[0] == 409 and refused[1]["error"] == "invalid_state"
    finally:
        await server.stop()


async def test_a_recorder_whose_clock_runs_an_hour_off_has_its_chunks_compared_on_the_servers_clock(
    server: ServerUnderTest,
) -> None:
    """A phone an hour ahead recorded offline while Done was pressed on the laptop: every chunk,
    stamped on its clock, started "an hour after the close" and was refused (audit "voicephone").
    The upload says the phone's clock as it sends (``X-Sent-At``): the start is compared with the
    close on one clock. A chunk really started after the close is still refused."""
    session_id, closed_at = await closed_session(server)
    token = server.token("alice")
    hour = 3_600_000
    cases = ((hour, 3000, 201), (-hour, 3000, 201), (hour, -20_000, 409))
    for length_ms, (ahead, started_before_close, wanted) in zip((700, 800, 900), cases, strict=True):
        phone_now = server.services.clock.now_ms() + ahead
        form = recorded(closed_at + ahead - started_before_close, webm(length_ms), session_id)
        status, body = await upload(server, token, form, headers={"X-Sent-At": str(phone_now)})
        assert status == wanted, (ahead, started_before_close, body)
    # Without the header (a client of the release before), the hour-ahead stamp is refused, as it was.
    form = recorded(closed_at + hour - 3000, webm(999), session_id)
    assert (await upload(server, token, form))[0] == 409
    # An X-Sent-At that says nothing is no correction: superscript digits were a 500 (audit
    # "anonhostile": str.isdigit() takes them, int() does not).
    for bad in ("soon", "-5", "9" * 20, "\u00b2", "\u00b9\u00b2\u00b3"):
        form = recorded(closed_at + hour - 3000, webm(998), session_id)
        assert (await upload(server, token, form, headers={"X-Sent-At": bad}))[0] == 409
