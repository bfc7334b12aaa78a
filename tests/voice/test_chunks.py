"""Audio chunk upload, dedupe, listing, signed audio links, caps and hostile uploads."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tests.audio_samples import ogg_opus, wav, webm
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest, to_window_start
from tests.voice.uploads import chunk_form, get_json, upload


@pytest_asyncio.fixture
async def small(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server with a 4 KiB chunk cap and at most 2 chunks per session."""
    srv = await start_server(redis_process.url, tmp_path, voice_max_chunk_bytes=4096, voice_max_chunks=2)
    yield srv
    await srv.stop()


def blob_files(server: ServerUnderTest) -> list[Path]:
    root = server.services.voice.config.blob_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_upload_stores_the_file_reads_its_duration_and_tells_subscribers(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    audio = webm(1500)

    status, body = await upload(
        server, server.token("alice"), chunk_form(session_id, audio, duration_ms=999, speaker="Alice")
    )

    assert status == 201, body
    chunk = body["chunk"]
    assert chunk["chunk_id"] == "ch000001" and body["duplicate"] is False
    assert (chunk["duration_ms"], chunk["client_duration_ms"], chunk["duration_source"]) == (1500, 999, "webm")
    assert (chunk["mime"], chunk["size_bytes"], chunk["speaker"]) == ("audio/webm", len(audio), "Alice")
    assert (body["chunk_count"], body["audio_ms"], body["storage_bytes"]) == (1, 1500, len(audio))
    [path] = blob_files(server)
    assert path.read_bytes() == audio and path.name == chunk["sha256"] and path.parent.name == session_id
    await watcher.wait_for(lambda: len(watcher.named("new_message")) == 1)
    event = watcher.named("new_message")[0]
    assert event["data"]["chunk"] == chunk and event["data"]["chunk_count"] == 1
    session = await server.services.voice.get(session_id)
    assert session is not None and (session.chunk_count, session.audio_ms, session.storage_bytes) == (
        1,
        1500,
        len(audio),
    )


async def test_same_audio_twice_is_one_chunk(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    token = server.token("alice")
    audio = ogg_opus(2000)
    first = await upload(server, token, chunk_form(session_id, audio))
    again = await upload(server, token, chunk_form(session_id, audio))  # a retry: its first answer lost

    assert first[0] == 201 and again[0] == 200
    assert again[1]["duplicate"] is True and again[1]["chunk"] == first[1]["chunk"]
    assert (again[1]["chunk_count"], again[1]["storage_bytes"]) == (1, len(audio))
    assert len(blob_files(server)) == 1
    await watcher.wait_for(lambda: len(watcher.named("new_message")) == 1)
    # The same audio in another session is that session's own chunk.
    other = await server.create_session("alice")
    assert (await upload(server, token, chunk_form(other, audio)))[0] == 201


async def test_the_same_audio_recorded_at_another_time_is_a_chunk_of_its_own(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """Two seconds of silence at 0 s and at 5 s, byte for byte the same (a client sending raw WAV):
    the second was answered as a duplicate of the first, and its stretch of the session was lost
    (audit "retries2"). A retry repeats the start as well as the audio; each is applied once."""
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    token = server.token("alice")
    audio = ogg_opus(2000)
    first = await upload(server, token, chunk_form(session_id, audio, start_ms=0, end_ms=2000))
    later = await upload(server, token, chunk_form(session_id, audio, start_ms=5000, end_ms=7000))
    assert (first[0], later[0]) == (201, 201), later
    assert later[1]["duplicate"] is False and later[1]["chunk"]["chunk_id"] != first[1]["chunk"]["chunk_id"]
    # Two chunks, one file: the session's storage counts it once (audit "verify41").
    assert (later[1]["chunk_count"], later[1]["audio_ms"], later[1]["storage_bytes"]) == (2, 4000, len(audio))
    assert later[1]["chunk"]["size_bytes"] == len(audio)
    for start_ms, answer in ((5000, later), (0, first)):  # each one's retry
        retry = await upload(server, token, chunk_form(session_id, audio, start_ms=start_ms, end_ms=start_ms + 2000))
        assert retry[0] == 200 and retry[1]["duplicate"] is True and retry[1]["chunk"] == answer[1]["chunk"], retry
    assert len(blob_files(server)) == 1  # one file for both
    await watcher.wait_for(lambda: len(watcher.named("new_message")) == 2)
    status, listing = await get_json(server, f"/voicebot/sessions/{session_id}/chunks", token)
    assert status == 200 and [chunk["start_ms"] for chunk in listing["chunks"]] == [0, 5000], listing
    async with aiohttp.ClientSession() as http:
        for chunk in listing["chunks"]:
            async with http.get(server.url + chunk["audio_url"]) as response:
                assert response.status == 200 and await response.read() == audio


async def test_list_is_in_start_order_with_working_signed_players(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    token = server.token("alice")
    late, early = webm(1000), webm(2000)
    await upload(server, token, chunk_form(session_id, late, start_ms=9000, end_ms=10000))
    await upload(server, token, chunk_form(session_id, early, start_ms=1000, end_ms=3000))

    status, body = await get_json(server, f"/voicebot/sessions/{session_id}/chunks", token)

    assert status == 200
    assert [c["start_ms"] for c in body["chunks"]] == [1000, 9000]
    assert [c["chunk_id"] for c in body["chunks"]] == ["ch000002", "ch000001"]
    assert (body["chunk_count"], body["audio_ms"], body["storage_bytes"]) == (2, 3000, len(late) + len(early))
    url = body["chunks"][0]["audio_url"]
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + url) as response:  # no bearer: the link is the credential
            assert response.status == 200 and response.content_type == "audio/webm"
            assert await response.read() == early
        async with http.get(server.url + url, headers={"Range": "bytes=0-9"}) as response:
            assert response.status == 206 and await response.read() == early[:10]
        tampered = url.replace("ch000002", "ch000001")
        async with http.get(server.url + tampered) as response:
            assert response.status == 403 and (await response.json())["error"] == "forbidden"
        server.services.clock.shift_ms = (server.services.voice.config.audio_link_ttl_s + 5) * 1000
        try:
            async with http.get(server.url + url) as response:
                assert response.status == 401 and (await response.json())["error"] == "unauthorized"
        finally:
            server.services.clock.shift_ms = 0


async def test_listing_needs_read_access(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    assert (await get_json(server, f"/voicebot/sessions/{session_id}/chunks", server.token("mallory")))[0] == 403
    assert (await get_json(server, f"/voicebot/sessions/{session_id}/chunks", None))[0] == 401
    assert (await get_json(server, "/voicebot/sessions/not-a-uuid/chunks", server.token("alice")))[0] == 400


async def test_closed_foreign_and_missing_sessions_are_refused(server: ServerUnderTest) -> None:
    closed = await server.create_session("alice")
    await server.services.voice.done(closed, performer_of("alice"))
    foreign = await server.create_session("bob")
    token = server.token("alice")
    missing = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"
    assert (await upload(server, token, chunk_form(closed, webm(500))))[1]["error"] == "invalid_state"
    assert (await upload(server, token, chunk_form(foreign, webm(500))))[1]["error"] == "forbidden"
    assert (await upload(server, token, chunk_form(missing, webm(500))))[1]["error"] == "session_not_found"
    assert (await upload(server, None, chunk_form(closed, webm(500))))[1]["error"] == "unauthorized"
    assert blob_files(server) == []


async def test_a_retry_after_close_is_still_the_stored_chunk(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    token = server.token("alice")
    audio = webm(800)
    assert (await upload(server, token, chunk_form(session_id, audio)))[0] == 201
    await server.services.voice.done(session_id, performer_of("alice"))
    status, body = await upload(server, token, chunk_form(session_id, audio))
    assert status == 200 and body["duplicate"] is True


async def test_size_cap_from_content_length_and_while_streaming(small: ServerUnderTest) -> None:
    session_id = await small.create_session("alice")
    token = small.token("alice")
    too_big = webm(5000)  # ~ 9 KiB
    assert len(too_big) > 4096
    status, body = await upload(small, token, chunk_form(session_id, too_big))
    assert (status, body["error"], body["max_bytes"]) == (413, "payload_too_large", 4096)

    writer = aiohttp.MultipartWriter("form-data")
    for name, value in (("session_id", session_id), ("start_ms", "0"), ("end_ms", "1"), ("duration_ms", "1")):
        writer.append(value).set_content_disposition("form-data", name=name)
    writer.append(too_big, {"Content-Type": "audio/webm"}).set_content_disposition(
        "form-data", name="file", filename="x.webm"
    )

    class Sink:
        def __init__(self) -> None:
            self.data = b""

        async def write(self, piece: bytes) -> None:
            self.data += piece

    sink = Sink()
    await writer.write(sink)  # type: ignore[arg-type]

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(sink.data), 1024):
            yield sink.data[i : i + 1024]

    status, body = await upload(small, token, stream(), headers={"Content-Type": writer.content_type})
    assert (status, body["error"]) == (413, "payload_too_large")
    assert blob_files(small) == []
    session = await small.services.voice.get(session_id)
    assert session is not None and session.chunk_count == 0


async def test_chunk_count_cap(small: ServerUnderTest) -> None:
    session_id = await small.create_session("alice")
    token = small.token("alice")
    for ms in (100, 200):
        assert (await upload(small, token, chunk_form(session_id, webm(ms))))[0] == 201
    status, body = await upload(small, token, chunk_form(session_id, webm(300)))
    assert (status, body["error"]) == (409, "limit_reached")
    # Named with its limit, as a full session of materials is (a bot cannot tell otherwise).
    assert body["limit"] == 2 and body["message"] == "a voice session holds at most 2 audio chunks", body
    assert len(blob_files(small)) == 2


def form_with(fields: list[tuple[str, Any]]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields:
        if name == "file":
            form.add_field("file", value, filename="a.webm", content_type="audio/webm")
        else:
            form.add_field(name, value)
    return form


def _fields(session_id: str, changes: dict[str, Any] | None = None) -> list[tuple[str, Any]]:
    base: dict[str, Any] = {
        "session_id": session_id,
        "start_ms": "0",
        "end_ms": "1000",
        "duration_ms": "1000",
        "file": webm(1000),
    }
    base.update(changes or {})
    return [(k, v) for k, v in base.items() if v is not None]


@pytest.mark.parametrize(
    "case",
    [
        {"start_ms": "12a"},
        {"start_ms": "-5"},
        {"end_ms": None},
        {"duration_ms": "1.5"},
        {"duration_ms": "999999999999"},
        {"start_ms": "5000", "end_ms": "1000"},
        {"speaker": "bad\x07name"},
        {"speaker": "bad\x85name"},  # C1 controls are control characters too
        {"speaker": "bad\u202ename"},  # a bidi override, refused in every name
        {"speaker": "x" * 65},
        {"note": "unexpected"},
        {"session_id": "../../etc/passwd"},
        {"file": b"<html><script>alert(1)</script></html>"},
        {"file": None},
        {"file": b""},
    ],
)
async def test_bad_forms_are_refused_and_change_nothing(server: ServerUnderTest, case: dict[str, Any]) -> None:
    session_id = await server.create_session("alice")
    fields = _fields(session_id, case)
    if "file" in dict(fields):  # keep the file last, as the protocol requires
        fields = [f for f in fields if f[0] != "file"] + [("file", dict(fields)["file"])]
    status, body = await upload(server, server.token("alice"), form_with(fields))
    assert status == 400 and body["error"] in ("invalid_payload", "invalid_session_id"), body
    assert blob_files(server) == []
    session = await server.services.voice.get(session_id)
    assert session is not None and session.chunk_count == 0


async def test_file_before_fields_and_non_multipart_are_refused(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    token = server.token("alice")
    fields = _fields(session_id)
    first = [("file", dict(fields)["file"])] + [f for f in fields if f[0] != "file"]
    assert (await upload(server, token, form_with(first)))[1]["error"] == "invalid_payload"
    assert (await upload(server, token, b'{"session_id": "x"}', headers={"Content-Type": "application/json"}))[1][
        "error"
    ] == "invalid_payload"
    # The connection and the server are fine afterwards.
    assert (await upload(server, token, chunk_form(session_id, webm(300))))[0] == 201


def performer_of(user: str) -> Any:
    from storage.voice.repository import Performer

    return Performer(user_id=user, read_scope="own", may_update=True)


async def test_an_announced_oversize_body_is_refused_before_it_is_sent(small: ServerUnderTest) -> None:
    session_id = await small.create_session("alice")
    host, port = small.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /voicebot/chunks HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {small.token('alice')}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n"
        f'--xyz\r\nContent-Disposition: form-data; name="session_id"\r\n\r\n{session_id}\r\n'
    )
    writer.write(head.encode())
    await writer.drain()
    # Nothing more is sent: only a server that decides from Content-Length answers now.
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")


async def delete(server: ServerUnderTest, session_id: str, token: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.delete(
            f"{server.url}/voicebot/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        return response.status, await response.json()


async def test_deleting_a_session_removes_its_blobs_and_tells_subscribers(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    kept = await server.create_session("alice")
    token = server.token("alice")
    sizes = []
    for ms in (700, 900):
        audio = webm(ms)
        sizes.append(len(audio))
        await upload(server, token, chunk_form(session_id, audio))
    await upload(server, token, chunk_form(kept, webm(300)))
    _, listed = await get_json(server, f"/voicebot/sessions/{session_id}/chunks", token)
    link = listed["chunks"][0]["audio_url"]
    watcher = await server.subscriber(clients, session_id)
    await server.services.voice.set_active("alice", session_id)

    assert (await delete(server, session_id, server.token("bob")))[0] == 403
    status, body = await delete(server, session_id, token)

    assert (status, body) == (200, {"deleted": True, "session_id": session_id, "freed_bytes": sum(sizes)})
    assert [p.parent.name for p in blob_files(server)] == [kept]
    await watcher.wait_for(lambda: any(e["data"].get("deleted") for e in watcher.named("session_update")))
    assert (await get_json(server, f"/voicebot/sessions/{session_id}", token))[0] == 404
    assert (await get_json(server, f"/voicebot/sessions/{session_id}/chunks", token))[0] == 404
    _, mine = await get_json(server, "/voicebot/sessions", token)
    assert [s["session_id"] for s in mine["sessions"]] == [kept]
    assert await server.services.voice.active_id("alice") is None
    async with aiohttp.ClientSession() as http, http.get(server.url + link) as response:
        assert response.status == 404
    assert (await delete(server, session_id, token))[0] == 404
    keys = await server.services.redis.keys(f"*{session_id}*")
    assert sorted(keys) == sorted([server.services.keys.log(session_id), server.services.keys.log_meta(session_id)])
    assert await server.services.redis.ttl(server.services.keys.log(session_id)) > 0


async def test_two_tabs_racing_the_same_chunk_store_it_once(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    token = server.token("alice")
    same = webm(1500)
    results = await asyncio.gather(*(upload(server, token, chunk_form(session_id, same)) for _ in range(6)))
    assert sorted(status for status, _ in results) == [200, 200, 200, 200, 200, 201]
    assert {body["chunk"]["chunk_id"] for _, body in results} == {"ch000001"}
    distinct = await asyncio.gather(
        *(upload(server, token, chunk_form(session_id, webm(100 + 20 * i))) for i in range(6))
    )
    assert sorted(body["chunk"]["chunk_id"] for _, body in distinct) == [f"ch{n:06d}" for n in range(2, 8)]
    assert len(blob_files(server)) == 7
    await watcher.wait_for(lambda: len(watcher.named("new_message")) == 7)
    assert [e["data"]["chunk_count"] for e in watcher.named("new_message")] == list(range(1, 8))


async def test_an_upload_flood_is_rate_limited(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    token = server.token("alice")
    audio = webm(100)
    statuses = []
    # The limit counts per minute window: start the flood at a window's start, so that it does
    # not straddle two windows (each would take 120).
    to_window_start(server.services.clock)
    async with aiohttp.ClientSession() as http:
        for _ in range(125):  # bounded: the limit is 120 a minute
            async with http.post(
                f"{server.url}/voicebot/chunks",
                data=chunk_form(session_id, audio),
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    body = await response.json()
                    break
    assert statuses[-1] == 429 and body["error"] == "rate_limited" and 0 < body["retry_after_s"] <= 60
    assert statuses[:-1] == [201] + [200] * (len(statuses) - 2)
    # Another user is not affected.
    other = await server.create_session("bob")
    assert (await upload(server, server.token("bob"), chunk_form(other, audio)))[0] == 201


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"abc", "multipart/form-data"),
        (b"garbage without boundary lines", "multipart/form-data; boundary=xyz"),
        (
            b'--xyz\r\nContent-Disposition: form-data; name="session_id"\r\n\r\n6f1c2d3e-4a5b',
            "multipart/form-data; boundary=xyz",
        ),
        (
            b"--xyz\r\nContent-Type: multipart/mixed; boundary=abc\r\n\r\n--abc--\r\n--xyz--\r\n",
            "multipart/form-data; boundary=xyz",
        ),
        (b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--xyz--\r\n", "multipart/form-data; boundary=xyz"),
        # A part header aiohttp cannot parse (a control character in the name): was a 500,
        # found by schemathesis (tests/test_openapi.py).
        (
            b'--xyz\r\nContent-Disposition: form-data; name="a\x06b"\r\n\r\nx\r\n--xyz--\r\n',
            "multipart/form-data; boundary=xyz",
        ),
    ],
)
async def test_malformed_multipart_is_a_bad_request(server: ServerUnderTest, body: bytes, content_type: str) -> None:
    status, answer = await upload(server, server.token("alice"), body, headers={"Content-Type": content_type})
    assert (status, answer["error"]) == (400, "invalid_payload")
    assert blob_files(server) == []


async def stalled_upload(server: ServerUnderTest, session_id: str) -> asyncio.StreamWriter:
    """A real chunk upload whose body stops halfway (its connection kept open)."""
    host, port = server.url.removeprefix("http://").split(":")
    audio = webm(3000)
    fields = [
        f'--xyz\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (("session_id", session_id), ("start_ms", 0), ("end_ms", 1), ("duration_ms", 1))
    ]
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.webm"\r\n\r\n'
    body = b"".join(fields) + head + audio[: len(audio) // 2]
    request = (
        f"POST /voicebot/chunks HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.token('alice')}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {len(body) + len(audio)}\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(request + body)
    await writer.drain()
    return writer


async def test_an_upload_cut_off_midway_leaves_no_file(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    writer = await stalled_upload(server, session_id)
    incoming = server.services.voice.config.blob_dir / ".incoming"
    started = False
    for _ in range(100):  # wait until the server is writing the file
        started = incoming.exists() and any(incoming.iterdir())
        if started:
            break
        await asyncio.sleep(0.02)
    assert started
    writer.close()
    await writer.wait_closed()
    for _ in range(100):
        if not blob_files(server):
            break
        await asyncio.sleep(0.05)
    assert blob_files(server) == []
    session = await server.services.voice.get(session_id)
    assert session is not None and session.chunk_count == 0


async def test_a_disk_that_refuses_the_write_is_unavailable_and_keeps_nothing(server: ServerUnderTest) -> None:
    """A write the file system refuses (a full disk, a quota, here the file-size limit: each a
    real refusal of the kernel) is ``503 unavailable`` with ``reason: storage_full``, not a
    500; the partial file is gone and nothing is counted as stored; once there is room the
    same upload is stored."""
    session_id = await server.create_session("alice")
    token = server.token("alice")
    audio = wav(4000)  # 64 KB
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # CPython ignores SIGXFSZ: a write past the limit fails with EFBIG instead of ending the process.
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, hard))
    try:
        status, body = await upload(server, token, chunk_form(session_id, audio))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert (status, body["error"], body.get("reason")) == (503, "unavailable", "storage_full"), body
    assert blob_files(server) == []
    incoming = server.services.voice.config.blob_dir / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir())
    status, listed = await get_json(server, f"/voicebot/sessions/{session_id}/chunks", token)
    assert status == 200 and listed["chunks"] == [], listed
    status, body = await upload(server, token, chunk_form(session_id, audio))
    assert status == 201 and body["chunk_count"] == 1, body


async def test_a_blob_that_cannot_be_put_in_place_leaves_no_temporary_file(server: ServerUnderTest) -> None:
    """The move into place fails (here a file stands where the session's folder goes): the
    upload is refused and its temporary file does not stay in ``.incoming`` for ever."""
    session_id = await server.create_session("alice")
    blob_dir = server.services.voice.config.blob_dir
    blob_dir.mkdir(parents=True, exist_ok=True)
    (blob_dir / session_id).write_bytes(b"in the way")
    status, body = await upload(server, server.token("alice"), chunk_form(session_id, wav(500)))
    assert status >= 500, body
    incoming = blob_dir / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir()), list(incoming.iterdir())
