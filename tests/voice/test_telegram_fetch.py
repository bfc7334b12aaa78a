"""Voice notes sent to the bot become audio chunks: fetched through a fake Telegram Bot API (a real
aiohttp server on a loopback port), stored once, transcribed on Done, late after a Done."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from redis.asyncio import Redis

from handlers.voice.chunks import chunk_repository
from jobs.processors import BUILT_IN
from handlers.voice.fetch_order import TELEGRAM_FETCH
from server.worker import Worker
from storage.jobs import Job
from tests.audio_samples import ogg_opus
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.voice.test_processing import SCRIPT
from tests.voice.test_telegram import ALICE_TG, bot_settings, command, message, post

TOKEN = "123456789:AAFakeTokenForTheTestsOnly_abcdefXYZ"
VOICE_MS = 3000
BOUND_S = 20.0

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeTelegram:
    """A Bot API serving getFile and the files; ``answers`` go first, then the file as it is."""

    files: dict[str, bytes] = field(default_factory=dict)  # file_id -> bytes
    answers: list[Answer] = field(default_factory=list)  # the next getFile answers, in order
    calls: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, path)
    hold: asyncio.Event | None = None  # set: downloads wait for it
    downloading: asyncio.Event = field(default_factory=asyncio.Event)
    size: dict[str, int] = field(default_factory=dict)  # file_id -> the file_size getFile says
    downloads: dict[str, Answer] = field(default_factory=dict)  # file path -> its own answer
    url: str = ""
    told: list[dict[str, Any]] = field(default_factory=list)  # sendMessage bodies

    def got(self, kind: str) -> list[float]:
        return [at for at, path in self.calls if kind in path]

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((time.monotonic(), request.path))
        if request.match_info["token"] != TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        if self.answers:
            return await self.answers.pop(0)(request)
        file_id = (await request.json())["file_id"]
        if file_id not in self.files:
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: wrong file_id"}, status=400
            )
        result = {"file_id": file_id, "file_unique_id": "u" + file_id, "file_path": f"voice/{file_id}.oga"}
        return web.json_response(
            {"ok": True, "result": {**result, "file_size": self.size.get(file_id, len(self.files[file_id]))}}
        )

    async def send_message(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        self.told.append(await request.json())
        return web.json_response({"ok": True, "result": {"message_id": len(self.told)}})

    async def file(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((time.monotonic(), request.path))
        if request.match_info["path"] in self.downloads:
            return await self.downloads[request.match_info["path"]](request)
        file_id = request.match_info["path"].removeprefix("voice/").removesuffix(".oga")
        if request.match_info["token"] != TOKEN or file_id not in self.files:
            return web.Response(status=404)
        self.downloading.set()
        if self.hold is not None:
            await asyncio.wait_for(self.hold.wait(), BOUND_S)
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")


@pytest_asyncio.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    app = web.Application()
    app.router.add_post("/bot{token}/getFile", fake.get_file)
    app.router.add_post("/bot{token}/sendMessage", fake.send_message)
    app.router.add_get("/file/bot{token}/{path:.+}", fake.file)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield fake
    if fake.hold is not None:
        fake.hold.set()
    await runner.cleanup()


async def fetching_bot(
    redis_process: RedisProcess, tmp_path: Path, fake: FakeTelegram, **extra: Any
) -> ServerUnderTest:
    settings: dict[str, Any] = {
        "voice_telegram_bot_token": TOKEN,
        "voice_telegram_api_url": fake.url,
        "voice_transcribe_command": f'{sys.executable} -c "{SCRIPT}" {{path}}',
        "job_backoff_base_ms": 50,
        **extra,
    }
    return await start_server(redis_process.url, tmp_path, **bot_settings(**settings))


@pytest_asyncio.fixture
async def bot(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, telegram: FakeTelegram
) -> AsyncIterator[ServerUnderTest]:
    srv = await fetching_bot(redis_process, tmp_path, telegram)
    yield srv
    await srv.stop()


def worker_of(server: ServerUnderTest) -> Worker:
    return Worker(
        services=server.services, processors=dict(BUILT_IN), max_attempts=3, backoff_base_ms=1, visibility_ms=60_000
    )


async def drive(server: ServerUnderTest, done: Callable[[], Awaitable[bool]], *, worker: Worker | None = None) -> None:
    """Run jobs until ``done()`` holds, within BOUND_S."""
    await server.services.jobs.ensure_group()
    worker = worker or worker_of(server)
    deadline = time.monotonic() + BOUND_S
    while not await done():
        assert time.monotonic() < deadline, "not done within the bound"
        await worker.run_once(block_ms=20)


def voice_note(file_id: str, duration_s: int = VOICE_MS // 1000, **extra: Any) -> dict[str, Any]:
    voice = {"file_id": file_id, "file_unique_id": "u" + file_id, "duration": duration_s, "mime_type": "audio/ogg"}
    return message(voice={**voice, **extra})


async def chunks_of(server: ServerUnderTest, session_id: str) -> list[dict[str, Any]]:
    return await chunk_repository(server.services).list(session_id, limit=100)


async def started(server: ServerUnderTest) -> str:
    status, _ = await post(server, {"update_id": _next(), "message": command("/start")})
    assert status == 200
    session_id = await server.services.voice.active_id("alice")
    assert session_id
    return session_id


_counter = iter(range(50_000, 10**9))


def _next() -> int:
    return next(_counter)


async def send(server: ServerUnderTest, msg: dict[str, Any], update_id: int | None = None) -> dict[str, Any]:
    status, reply = await post(server, {"update_id": update_id or _next(), "message": msg})
    assert status == 200, reply
    assert isinstance(reply, dict)
    return reply


async def queued(server: ServerUnderTest, kind: str) -> list[Job]:
    entries = await server.services.redis.xrange(server.services.keys.jobs())
    return [job for _, fields in entries if (job := Job.from_json(fields["job"])).type == kind]


async def material(server: ServerUnderTest, session_id: str) -> dict[str, Any]:
    [voice] = [m for m in await server.services.voice.materials(session_id, limit=100) if m["kind"] == "voice"]
    return voice


def waiting(status: int, description: str, **parameters: Any) -> Answer:
    async def answer(_: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    return answer


# --- the journey -------------------------------------------------------------------------------


async def test_a_voice_note_becomes_one_chunk_played_listed_and_transcribed_on_done(
    bot: ServerUnderTest, telegram: FakeTelegram
) -> None:
    audio = ogg_opus(VOICE_MS)
    telegram.files["voice-1"] = audio
    session_id = await started(bot)
    watcher = Client(bot.url, bot.token("alice"))
    try:
        await watcher.connect()
        await watcher.call("subscribe_on_session", {"session_id": session_id})
        reply = await send(bot, voice_note("voice-1"))
        assert reply["text"].startswith("Добавлено в сессию")
        as_sent = await material(bot, session_id)
        assert as_sent["audio"] == "fetching"  # said from the start (the page says "being fetched")

        await drive(bot, lambda: _has_chunks(bot, session_id, 1))
        # Live, as the FAB's chunks are: a new_message with the chunk and the session's totals.
        await watcher.wait_for(lambda: len(watcher.named("new_message")) == 1)
        event = watcher.named("new_message")[0]["data"]
    finally:
        await watcher.close()
    [chunk] = await chunks_of(bot, session_id)
    assert event["chunk"] == chunk and event["chunk_count"] == 1
    assert (chunk["mime"], chunk["duration_ms"], chunk["duration_source"]) == ("audio/ogg", VOICE_MS, "ogg")
    assert chunk["size_bytes"] == len(audio) and chunk["uploaded_by"] == "alice"
    session = await bot.services.voice.get(session_id)
    assert session is not None and (session.chunk_count, session.audio_ms, session.storage_bytes) == (
        1,
        VOICE_MS,
        len(audio),
    )
    # The owner's daily quota counted it.
    used = await bot.services.redis.get(bot.services.keys.upload_bytes("u:alice"))
    assert used is not None and int(used) >= len(audio)
    noted = await material(bot, session_id)
    # Kept on the material, which is otherwise as it was (its times still whole milliseconds).
    assert noted == {**as_sent, "audio": "stored", "chunk_id": chunk["chunk_id"]}
    assert isinstance(noted["added_at"], int) and chunk["end_ms"] == noted["added_at"]
    assert len(telegram.got("getFile")) == 1 and len(telegram.got("/file/")) == 1
    # Playable: the chunk list's signed link serves the very bytes.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{bot.url}/voicebot/sessions/{session_id}/chunks",
            headers={"Authorization": f"Bearer {bot.token('alice')}"},
        ) as listed,
    ):
        link = (await listed.json())["chunks"][0]["audio_url"]
        async with http.get(f"{bot.url}{link}") as played:
            assert played.status == 200 and await played.read() == audio

    await send(bot, command("/done"))
    await drive(bot, lambda: _digested(bot, session_id, 1))
    session = await bot.services.voice.get(session_id)
    assert session is not None and session.digest is not None
    assert session.digest["transcription"] == "1 of 1 chunks transcribed"
    assert session.digest["transcripts"] == [
        {"chunk_id": chunk["chunk_id"], "text": f"TODO: listen to {len(audio)} bytes"}
    ]
    assert [t["text"] for t in session.tasks or []] == [f"listen to {len(audio)} bytes"]


async def _has_chunks(server: ServerUnderTest, session_id: str, count: int) -> bool:
    return len(await chunks_of(server, session_id)) >= count


async def _digested(server: ServerUnderTest, session_id: str, chunks: int) -> bool:
    session = await server.services.voice.get(session_id)
    digest = session.digest if session else None
    return bool(digest and digest["chunk_count"] == chunks and digest["transcription"].startswith(f"{chunks} of"))


async def test_the_same_update_twice_and_the_job_run_twice_store_one_chunk(
    bot: ServerUnderTest, telegram: FakeTelegram
) -> None:
    telegram.files["voice-2"] = ogg_opus(1000)
    session_id = await started(bot)
    note, update_id = voice_note("voice-2", 1), _next()
    first = await send(bot, note, update_id)
    again = await send(bot, note, update_id)  # Telegram's redelivery
    assert first == again
    assert len(await queued(bot, TELEGRAM_FETCH)) == 1
    [job] = await queued(bot, TELEGRAM_FETCH)
    # The job run again (a worker that died holding it, a second node): the same chunk.
    await bot.services.jobs.enqueue(job)
    await drive(bot, lambda: _no_jobs_left(bot))
    assert len(telegram.got("/file/")) == 2
    [chunk] = await chunks_of(bot, session_id)
    session = await bot.services.voice.get(session_id)
    assert session is not None and (session.chunk_count, session.storage_bytes) == (1, chunk["size_bytes"])
    assert len(await bot.services.voice.materials(session_id, limit=10)) == 1


async def _no_jobs_left(server: ServerUnderTest) -> bool:
    counts = await server.services.jobs.counts()
    return counts["queued"] == 0 and counts["delayed"] == 0


# --- Telegram's answers -------------------------------------------------------------------------


async def test_a_429_is_waited_as_telegram_says_then_the_file_is_stored(
    bot: ServerUnderTest, telegram: FakeTelegram
) -> None:
    telegram.files["voice-3"] = ogg_opus(1000)
    telegram.answers.append(waiting(429, "Too Many Requests: retry after 1", retry_after=1))
    session_id = await started(bot)
    await send(bot, voice_note("voice-3", 1))

    await drive(bot, lambda: _has_chunks(bot, session_id, 1))
    first, second = telegram.got("getFile")
    assert second - first >= 1.0  # not before Telegram's retry_after
    assert (await material(bot, session_id))["audio"] == "stored"


async def test_two_5xx_then_the_file_is_stored_and_the_token_is_never_said(
    bot: ServerUnderTest, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    telegram.files["voice-4"] = ogg_opus(1000)
    telegram.answers += [waiting(502, "Bad Gateway"), waiting(500, "Internal Server Error")]
    session_id = await started(bot)
    await send(bot, voice_note("voice-4", 1))

    await drive(bot, lambda: _has_chunks(bot, session_id, 1))
    assert len(telegram.got("getFile")) == 3
    events = await bot.services.redis.xrange(bot.services.keys.log(session_id))
    said = json.dumps([fields for _, fields in events]) + caplog.text
    assert "answered 502" in said and TOKEN.split(":")[1] not in said


@pytest.mark.parametrize(
    ("answer", "why", "operators"),
    [
        (waiting(400, "Bad Request: file is too big"), "file is too big", False),
        (waiting(404, "Not Found"), "answered 404", True),  # a wrong API address
        (waiting(401, "Unauthorized"), "answered 401", True),  # the token refused
    ],
)
async def test_a_file_telegram_refuses_fails_for_good_once(
    bot: ServerUnderTest, telegram: FakeTelegram, answer: Answer, why: str, operators: bool
) -> None:
    """Dead-lettered (to be run again) only when the operator can change it; the file's own
    failure is said on the material and raised no alert: only the person can do anything about it."""
    telegram.files["voice-5"] = ogg_opus(1000)
    telegram.answers.append(answer)
    await _fails_for_good(bot, telegram, "voice-5", why, operators=operators)


async def test_a_file_over_20_mb_is_not_fetched(bot: ServerUnderTest, telegram: FakeTelegram) -> None:
    telegram.files["voice-6"] = ogg_opus(1000)
    telegram.size["voice-6"] = 21 * 1024 * 1024  # as getFile says it
    await _fails_for_good(bot, telegram, "voice-6", "at most 20971520")
    assert telegram.got("/file/") == []


async def test_a_download_past_20_mb_is_cut_while_it_streams(bot: ServerUnderTest, telegram: FakeTelegram) -> None:
    sent = {"bytes": 0}

    async def endless(request: web.Request) -> web.StreamResponse:
        # No length said, and no file_size from getFile: only the stream itself can be cut.
        response = web.StreamResponse()
        await response.prepare(request)
        piece = b"\x00" * (1024 * 1024)
        try:
            for _ in range(64):
                await response.write(piece)
                sent["bytes"] += len(piece)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def no_size(request: web.Request) -> web.StreamResponse:
        result = {"file_id": "voice-7", "file_unique_id": "u7", "file_path": "voice/big.oga"}
        return web.json_response({"ok": True, "result": result})

    telegram.answers.append(no_size)
    telegram.downloads["voice/big.oga"] = endless
    await _fails_for_good(bot, telegram, "voice-7", "more than 20971520 bytes")
    assert sent["bytes"] < 64 * 1024 * 1024


async def _fails_for_good(
    bot: ServerUnderTest, telegram: FakeTelegram, file_id: str, why: str, *, operators: bool = False
) -> None:
    """The fetch fails once, said on the material and to the session; dead-lettered only when
    ``operators`` (the operator's to fix), else declined (the file's or the person's)."""
    declined_before = bot.services.metrics.jobs_declined._value.get()
    session_id = await started(bot)
    await send(bot, voice_note(file_id, 1))
    await drive(bot, lambda: _no_jobs_left(bot))
    calls = len(telegram.calls)
    worker = worker_of(bot)
    for _ in range(5):  # nothing comes back to try it again
        await worker.run_once(block_ms=20)
    assert len(telegram.calls) == calls and len(telegram.got("getFile")) == 1
    assert await chunks_of(bot, session_id) == []
    noted = await material(bot, session_id)
    assert noted["audio"] == "failed" and why in noted["audio_error"], noted
    if operators:
        [dead] = await bot.services.jobs.dead()
        assert dead.type == TELEGRAM_FETCH and why in dead.last_error
    else:
        assert await bot.services.jobs.dead() == []
        assert bot.services.metrics.jobs_declined._value.get() == declined_before + 1
    last_job = (await bot.services.voice.get(session_id)).last_job  # type: ignore[union-attr]
    assert last_job is not None and last_job["status"] == "failed" and why in last_job["error"]
    return session_id


# --- a Done while the fetch is held ---------------------------------------------------------------


async def test_a_done_while_the_fetch_is_held_takes_the_chunk_late_and_processes_again(
    bot: ServerUnderTest, telegram: FakeTelegram
) -> None:
    audio = ogg_opus(2000)
    telegram.files["voice-8"] = audio
    telegram.hold = asyncio.Event()
    session_id = await started(bot)
    await send(bot, voice_note("voice-8", 2))
    await bot.services.jobs.ensure_group()
    fetching, stop = worker_of(bot), asyncio.Event()
    fetcher = asyncio.create_task(fetching.run(stop, block_ms=20))
    try:
        await asyncio.wait_for(telegram.downloading.wait(), BOUND_S)
        reply = await send(bot, command("/done"))
        assert reply["text"].startswith("Сессия закрыта")
        # Another worker processes the Done meanwhile: no audio yet.
        other = worker_of(bot)
        await drive(bot, lambda: _digest_with(bot, session_id, 0), worker=other)
        telegram.hold.set()
        await drive(bot, lambda: _digested(bot, session_id, 1), worker=other)
    finally:
        stop.set()
        await asyncio.wait_for(fetcher, BOUND_S)
    [chunk] = await chunks_of(bot, session_id)
    assert chunk["size_bytes"] == len(audio)
    session = await bot.services.voice.get(session_id)
    assert session is not None and session.status == "closed" and session.closed_at is not None
    assert chunk["uploaded_at"] > session.closed_at  # it came after the close, and was taken
    assert session.digest is not None and session.digest["transcription"] == "1 of 1 chunks transcribed"


async def test_a_stalled_download_does_not_hold_the_jobs_beside_it(
    bot: ServerUnderTest, telegram: FakeTelegram
) -> None:
    """The worker ran its batch one job after another: six downloads stalled 15 s each held the
    single worker, and another person's Done, 90 s (audit "verify50"). A fetch runs beside the
    rest of its batch now: the Done is processed while the download is still held."""
    telegram.files["voice-s1"] = ogg_opus(1000)
    telegram.hold = asyncio.Event()
    session_id = await started(bot)
    await send(bot, voice_note("voice-s1", 1))
    other = await bot.create_session("bob")  # another person's session, closed with Done
    bob = Client(bot.url, bot.token("bob"))
    await bob.connect()
    try:
        assert (await bob.call("session_done", {"session_id": other}))["ok"] is True
    finally:
        await bob.close()
    await bot.services.jobs.ensure_group()
    batch = asyncio.create_task(worker_of(bot).run_once(block_ms=20))
    try:
        deadline = time.monotonic() + BOUND_S
        while not await _digest_with(bot, other, 0):
            assert time.monotonic() < deadline, "the Done was not processed"
            await asyncio.sleep(0.02)
        assert telegram.downloading.is_set() and not batch.done()  # the download is still held
        logged = [json.loads(f["e"]) for _, f in await bot.services.redis.xrange(bot.services.keys.log(session_id))]
        fetch_results = [e for e in logged if e["type"] == "job_result" and e["data"]["job_type"] == TELEGRAM_FETCH]
        assert fetch_results == []  # not cut and retried before the Done ran: still under way
    finally:
        telegram.hold.set()
        await asyncio.wait_for(batch, BOUND_S)
    await drive(bot, lambda: _has_chunks(bot, session_id, 1))


async def _digest_with(server: ServerUnderTest, session_id: str, chunks: int) -> bool:
    session = await server.services.voice.get(session_id)
    return bool(session and session.digest and session.digest["chunk_count"] == chunks)


# --- without a token ----------------------------------------------------------------------------


async def test_without_a_token_nothing_is_fetched(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, telegram: FakeTelegram
) -> None:
    telegram.files["voice-9"] = ogg_opus(1000)
    srv = await fetching_bot(redis_process, tmp_path, telegram, voice_telegram_bot_token="")
    try:
        session_id = await started(srv)
        await send(srv, voice_note("voice-9", 1))
        assert await queued(srv, TELEGRAM_FETCH) == []
        await drive(srv, lambda: _no_jobs_left(srv))
        assert telegram.calls == [] and await chunks_of(srv, session_id) == []
        assert "audio" not in await material(srv, session_id)
    finally:
        await srv.stop()


async def test_an_audio_file_is_fetched_as_a_voice_note_is(bot: ServerUnderTest, telegram: FakeTelegram) -> None:
    telegram.files["audio-1"] = ogg_opus(1000)
    session_id = await started(bot)
    audio = {"file_id": "audio-1", "file_unique_id": "ua1", "duration": 1, "title": "lecture", "mime_type": "audio/ogg"}
    await send(bot, message(audio=audio, caption="лекция"))
    await drive(bot, lambda: _has_chunks(bot, session_id, 1))
    assert (await material(bot, session_id))["text"] == "лекция"


async def test_a_path_out_of_the_bots_folder_is_refused(bot: ServerUnderTest, telegram: FakeTelegram) -> None:
    async def escaping(_: web.Request) -> web.StreamResponse:
        result = {"file_id": "voice-10", "file_unique_id": "u10", "file_path": "voice/../../etc/passwd"}
        return web.json_response({"ok": True, "result": result})

    telegram.files["voice-10"] = ogg_opus(1000)
    telegram.answers.append(escaping)
    await _fails_for_good(bot, telegram, "voice-10", "no path")
    assert telegram.got("/file/") == []


def test_the_token_is_no_part_of_the_voice_configs_repr(tmp_path: Path) -> None:
    from storage.voice.config import VoiceConfig

    assert TOKEN not in repr(VoiceConfig(telegram_bot_token=TOKEN))


__all__ = ["ALICE_TG"]


# --- audit "tgfetch" --------------------------------------------------------------------------------


async def test_telegrams_words_never_carry_the_token_and_a_redirect_fails_for_good(
    bot: ServerUnderTest, telegram: FakeTelegram
) -> None:
    """A Bot API that echoes the token in its `description` put it on the page, the log and the
    dead letters; a redirect (never followed) was tried eight times."""

    async def echoing(request: web.Request) -> web.StreamResponse:
        body = {"ok": False, "error_code": 400, "description": f"Bad Request: bot{TOKEN} has no such file"}
        return web.json_response(body, status=400)

    telegram.answers.append(echoing)
    echoed = await _fails_for_good(bot, telegram, "voice-e1", "bot<token> has no such file")
    last_job = (await bot.services.voice.get(echoed)).last_job  # type: ignore[union-attr]
    assert last_job is not None and TOKEN not in json.dumps(last_job)

    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "http://elsewhere.invalid/"})

    telegram.files["voice-e2"] = ogg_opus(1000)
    telegram.downloads["voice/voice-e2.oga"] = moved
    session_id = await started(bot)
    await send(bot, voice_note("voice-e2", 1))
    await drive(bot, lambda: _no_jobs_left(bot))
    assert len(telegram.got("/file/")) == 1  # not tried again
    noted = await material(bot, session_id)
    assert noted["audio"] == "failed" and "302" in noted["audio_error"], noted
    [dead] = await bot.services.jobs.dead()  # the API address is the operator's to fix
    assert "302" in dead.last_error and TOKEN not in dead.last_error


async def test_a_file_the_quota_cannot_hold_holds_none_of_it(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, telegram: FakeTelegram
) -> None:
    """A file bigger than the quota left reserved all that was left through its download, and the
    person's next note was refused for good meanwhile (audit "tgfetch")."""
    quota = 200_000
    srv = await fetching_bot(redis_process, tmp_path, telegram, voice_upload_quota_bytes=quota)
    try:
        telegram.files["voice-q1"] = ogg_opus(1000)
        telegram.size["voice-q1"] = quota + 1  # as getFile says it: more than the day allows
        telegram.files["voice-q2"] = ogg_opus(1200)
        session_id = await started(srv)
        await send(srv, voice_note("voice-q1", 1))
        await send(srv, voice_note("voice-q2", 1))
        await drive(srv, lambda: _no_jobs_left(srv))
        assert not any(path.endswith("/voice/voice-q1.oga") for _, path in telegram.calls)  # never downloaded
        chunks = await chunks_of(srv, session_id)
        assert len(chunks) == 1, chunks  # the second note, stored
        noted = [m for m in await srv.services.voice.materials(session_id, limit=10) if m["kind"] == "voice"]
        assert [m.get("audio") for m in noted] == ["failed", "stored"], noted
        used = await srv.services.redis.get(srv.services.keys.upload_bytes("u:alice"))
        # The stored audio and the materials' own bytes: nothing left held for the one refused.
        assert chunks[0]["size_bytes"] <= int(used or 0) < chunks[0]["size_bytes"] + 2_000, used
    finally:
        await srv.stop()


async def test_a_download_that_trickles_is_cut_and_tried_again(bot: ServerUnderTest, telegram: FakeTelegram) -> None:
    """A file served at a few bytes a second held the one worker, and every other person's Done,
    for the whole download limit (131 s in the audit); it is cut once clearly too slow."""
    audio = ogg_opus(1000)
    telegram.files["voice-t1"] = audio
    tries = {"n": 0}

    async def trickle(request: web.Request) -> web.StreamResponse:
        tries["n"] += 1
        if tries["n"] > 1:  # the next try is served whole
            return web.Response(body=audio, content_type="application/octet-stream")
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for byte in audio[:400]:
                await response.write(bytes([byte]))
                await asyncio.sleep(0.02)
        except (ConnectionError, RuntimeError):
            pass
        return response

    telegram.downloads["voice/voice-t1.oga"] = trickle
    session_id = await started(bot)
    await send(bot, voice_note("voice-t1", 1))
    began = time.monotonic()
    await drive(bot, lambda: _chunk_count(bot, session_id, 1))
    assert tries["n"] == 2 and time.monotonic() - began < BOUND_S
    assert (await material(bot, session_id))["audio"] == "stored"


async def _chunk_count(server: ServerUnderTest, session_id: str, count: int) -> bool:
    return len(await chunks_of(server, session_id)) >= count


# --- over the rate limit ---------------------------------------------------------------------------


async def test_a_chat_over_the_rate_limit_is_told_once_a_minute_that_the_rest_come_later(
    bot: ServerUnderTest, telegram: FakeTelegram
) -> None:
    """Over the webhook's limit an update is answered 429 (Telegram delivers it again later), and
    the chat was silent: a batch of voice notes had some answered, the rest not, with no word."""
    from handlers.voice.telegram import SLOW_DOWN

    for _ in range(60):
        await bot.services.limiter.hit("telegram", str(ALICE_TG), limit=60, window_s=60)
    status, _ = await post(bot, {"update_id": _next(), "message": voice_note("voice-r1", 1)})
    assert status == 429
    deadline = time.monotonic() + BOUND_S
    while not telegram.told:
        assert time.monotonic() < deadline, "the chat was not told"
        await asyncio.sleep(0.02)
    assert telegram.told == [{"chat_id": ALICE_TG, "text": SLOW_DOWN}]
    for _ in range(2):  # the same minute: not again
        assert (await post(bot, {"update_id": _next(), "message": voice_note("voice-r2", 1)}))[0] == 429

    bot.services.clock.shift_ms += 60_000  # the next minute, and the limit filled again
    for _ in range(60):
        await bot.services.limiter.hit("telegram", str(ALICE_TG), limit=60, window_s=60)
    assert (await post(bot, {"update_id": _next(), "message": voice_note("voice-r3", 1)}))[0] == 429
    while len(telegram.told) < 2:
        assert time.monotonic() < deadline, "the chat was not told in the next minute"
        await asyncio.sleep(0.02)
    assert len(telegram.told) == 2


async def test_a_file_of_unknown_size_holds_little_of_the_quota_while_it_downloads(
    bot: ServerUnderTest, telegram: FakeTelegram
) -> None:
    """Without a `file_size` the fetch held 20 MiB of the day's quota through its download, and a
    process killed then left them counted for the day (audit "verify50"): 1 MiB now, and the file's
    own size once it is down."""
    from jobs.telegram_fetch import UNKNOWN_SIZE_HELD

    audio = ogg_opus(1500)

    async def no_size(request: web.Request) -> web.StreamResponse:
        result = {"file_id": "voice-u1", "file_unique_id": "uu1", "file_path": "voice/voice-u1.oga"}
        return web.json_response({"ok": True, "result": result})

    telegram.files["voice-u1"] = audio
    telegram.answers.append(no_size)
    telegram.hold = asyncio.Event()
    session_id = await started(bot)
    await send(bot, voice_note("voice-u1", 1))
    used_key = bot.services.keys.upload_bytes("u:alice")
    before = int(await bot.services.redis.get(used_key) or 0)
    await bot.services.jobs.ensure_group()
    batch = asyncio.create_task(worker_of(bot).run_once(block_ms=20))
    try:
        await asyncio.wait_for(telegram.downloading.wait(), BOUND_S)
        held = int(await bot.services.redis.get(used_key) or 0) - before
        assert 0 < held <= UNKNOWN_SIZE_HELD, held
    finally:
        telegram.hold.set()
        await asyncio.wait_for(batch, BOUND_S)
    await drive(bot, lambda: _has_chunks(bot, session_id, 1))
    assert int(await bot.services.redis.get(used_key) or 0) - before == len(audio)
