"""A chunk upload whose fields do not all come before its file part is refused with a message
that says so: the fields are checked before a byte of audio is read, so a field sent after the
file is, at the file, a field missing; the refusal names it and where it had to be."""

from __future__ import annotations

import pytest

from tests.audio_samples import webm
from tests.helpers import ServerUnderTest
from tests.voice.test_chunks import blob_files, form_with
from tests.voice.uploads import upload

FIELDS_FIRST = "the fields must come before the file part"


@pytest.mark.parametrize(
    ("after_file", "named"),
    [
        (["start_ms"], "start_ms"),
        (["start_ms", "end_ms", "duration_ms"], "start_ms, end_ms, duration_ms"),
        (["session_id"], "session_id"),
    ],
)
async def test_a_field_after_the_file_part_is_refused_as_such(
    server: ServerUnderTest, after_file: list[str], named: str
) -> None:
    session_id = await server.create_session("alice")
    fields = {"session_id": session_id, "start_ms": "0", "end_ms": "1000", "duration_ms": "1000"}
    before = [(name, value) for name, value in fields.items() if name not in after_file]
    after = [(name, fields[name]) for name in after_file]
    parts: list[tuple[str, str | bytes]] = [*before, ("file", webm(1000)), *after]
    status, body = await upload(server, server.token("alice"), form_with(parts))
    assert (status, body["error"]) == (400, "invalid_payload"), body
    assert body["message"] == f"{FIELDS_FIRST}: {named} not sent before it", body
    assert blob_files(server) == []
    session = await server.services.voice.get(session_id)
    assert session is not None and session.chunk_count == 0


async def test_a_field_missing_altogether_is_named_too(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    parts: list[tuple[str, str | bytes]] = [
        ("session_id", session_id),
        ("start_ms", "0"),
        ("duration_ms", "1000"),
        ("file", webm(1000)),
    ]
    status, body = await upload(server, server.token("alice"), form_with(parts))
    assert (status, body["message"]) == (400, f"{FIELDS_FIRST}: end_ms not sent before it"), body
